query.exists('lm')
