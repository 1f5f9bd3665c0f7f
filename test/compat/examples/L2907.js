query.matches('language',/[\\u4e00-\\u9fa5]/); // language 是中文字符
