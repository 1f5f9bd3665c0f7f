/**
 * 创建一个对话
 * @param {Object} options 除了下列字段外的其他字段将被视为对话的自定义属性
 * @param {String[]} options.members 对话的初始成员列表，必要参数，默认包含当前 client
 * @param {String} [options.name] 对话的名字，可选参数，如果不传默认值为 null
 * @param {Boolean} [options.transient=false] 是否为聊天室，可选参数
 * @param {Boolean} [options.unique=false] 是否唯一对话，当其为 true 时，如果当前已经有相同成员的对话存在则返回该对话，否则会创建新的对话
 * @param {Boolean} [options.tempConv=false] 是否为临时对话，可选参数
 * @param {Integer} [options.tempConvTTL=0] 可选参数，如果 tempConv 为 true，这里可以指定临时对话的生命周期。
 * @return {Promise.<Conversation>}
 */
async createConversation({
  members: m,
  name,
  transient,
  unique,
  tempConv,
  tempConvTTL,
  // 可添加更多属性
});
