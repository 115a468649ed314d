"""The app's home page (应用主页) inside WeCom: 总览, 单位, 我的 and the admins' page, served by the
callback server under /web/. Read-only, except the report form (the chat's own handler, through
the writer) and the outbox retry button."""
