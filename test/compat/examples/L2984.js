query.containedIn('m', ['Tom']);
