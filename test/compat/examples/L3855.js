tom.close().then(function() {
  console.log('Tom 退出登录');
}).catch(console.error.bind(console));
