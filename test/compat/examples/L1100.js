william.getConversation('CONVERSATION_ID').then(function(conversation) {
  return conversation.join();
}).then(function(conversation) {
  console.log('加入成功', conversation.members);
  // 此时对话成员为：['William', 'Tom', 'Jerry']
}).catch(console.error.bind(console));
