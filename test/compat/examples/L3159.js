query.compact(true);
