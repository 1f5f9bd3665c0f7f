conversation.send(new TextMessage('大家好，欢迎来到我们的群聊对话'));
