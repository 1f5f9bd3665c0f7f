/**
 * 对话信息被更新
 * @event IMClient#CONVERSATION_INFO_UPDATED
 * @param {Object} payload
 * @param {Object} payload.attributes 被更新的属性
 * @param {String} payload.updatedBy 该操作的发起者 ID
 */
var { Event } = require('leancloud-realtime');
client.on(Event.CONVERSATION_INFO_UPDATED, function(payload) {
});
