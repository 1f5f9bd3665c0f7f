// Tom 用自己的名字作为 clientId 来登录即时通讯服务
realtime.createIMClient('Tom').then(function(tom) {
  // 成功登录
}).catch(console.error);
