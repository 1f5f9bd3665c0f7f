// 首先根据 ID 获取 Conversation 实例
tom.getConversation('CONVERSATION_ID').then(function(conversation) {
  // 邀请 Mary 加入对话
  return conversation.add(['Mary']);
}).then(function(conversation) {
  console.log('添加成功', conversation.members);
  // 此时对话成员为：['Mary', 'Tom', 'Jerry']
}).catch(console.error.bind(console));
