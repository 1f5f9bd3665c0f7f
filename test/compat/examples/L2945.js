query.contains('name','教育');
