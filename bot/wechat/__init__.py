"""The WeChat official account: the webhook (webhook.py: verify, decrypt, parse, answer
passively), messages as the dialogs see them (messages.py), strict XML parsing
(xml_parse.py), the API client (client.py), and the outbox sender and media fetcher
(outbound.py)."""
