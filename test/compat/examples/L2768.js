var query = client.getQuery();
query.equalTo('attr.type','private');
query.find().then(function(conversations) {
  // conversations 就是想要的结果
}).catch(console.error.bind(console));
