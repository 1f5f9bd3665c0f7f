tom.createConversation({
  members: ['Jerry'],
  name: '猫和老鼠',
  unique: true,
  type: 'private',
  pinned: true,
}).then(function(conversation) {
  console.log('创建成功。ID：' + conversation.id);
}).catch(console.error.bind(console));
