// JS SDK 通过在 IMClient 实例上监听事件回调来响应服务端通知

// 当前用户被添加至某个对话
jerry.on(Event.INVITED, function invitedEventHandler(payload, conversation) {
    console.log(payload.invitedBy, conversation.id);
});

// 当前用户收到了某一条消息，可以通过响应 Event.MESSAGE 这一事件来处理。
jerry.on(Event.MESSAGE, function(message, conversation) {
    console.log('收到新消息：' + message.text);
});
