query.startsWith('name','教育');
