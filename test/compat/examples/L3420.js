conversation.queryMessages({
  limit: 10, // limit 取值范围 1~100，默认 20
}).then(function(messages) {
  // 最新的十条消息，按时间增序排列
}).catch(console.error.bind(console));
