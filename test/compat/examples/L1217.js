conversation.quit().then(function(conversation) {
  console.log('退出成功', conversation.members);
}).catch(console.error.bind(console));
