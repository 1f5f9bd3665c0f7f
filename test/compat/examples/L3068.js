// JavaScript SDK 暂不支持
