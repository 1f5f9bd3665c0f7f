var regExp = new RegExp('^((?!教育).)*$', 'i');
query.matches('name', regExp);
