// fetch 方法会执行一次刷新操作，以获取云端最新对话数据。
conversation.fetch().then(function(conversation) {
  console.log('members: ', conversation.members);
).catch(console.error.bind(console));
