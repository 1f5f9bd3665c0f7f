query.doesNotExist('lm')
