conversation.name = '聪明的喵星人';
conversation.save();
