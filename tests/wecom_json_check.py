"""What WeCom does with a smart robot's passive reply, written here from the protocol (回调和回复的
加解密方案, and the JSON sample's DecryptMsg), independently of wechatpy and of the bot's code:

- the reply is JSON {"encrypt", "msgsignature", "timestamp", "nonce"};
- its signature is sha1 over the sorted strings token, timestamp, nonce and encrypt, where the nonce is
  the one WeCom put in the callback URL (a reply with another nonce fails the check);
- encrypt is base64 of AES-256-CBC (key: base64 of EncodingAESKey + "=", IV: the key's first 16
  bytes, PKCS#7 padding to 32-byte blocks) over 16 random bytes, the message's length (4 bytes,
  big-endian), the message and the receive id ("" for a company's own robot).
"""
from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class ReplyRejected(Exception):
    """What WeCom's check would refuse the reply for."""


def open_reply(body: bytes | str, token: str, aes_key: str, url_nonce: str, receive_id: str = "") -> dict:
    """The reply's plaintext JSON, if WeCom would accept it as the answer to a callback whose URL
    carried `url_nonce`; else ReplyRejected."""
    try:
        envelope = json.loads(body)
        encrypt, signature, timestamp = envelope["encrypt"], envelope["msgsignature"], envelope["timestamp"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplyRejected(f"not a reply envelope: {exc}") from None
    if envelope.get("nonce") != url_nonce:
        raise ReplyRejected(f"nonce {envelope.get('nonce')!r} is not the callback URL's {url_nonce!r}")
    expected = hashlib.sha1("".join(sorted([token, str(timestamp), url_nonce, encrypt])).encode()).hexdigest()
    if expected != signature:
        raise ReplyRejected("signature does not match with the callback URL's nonce")
    key = base64.b64decode(aes_key + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 32 or padded[-pad:] != bytes([pad]) * pad:
        raise ReplyRejected("bad padding")
    content = padded[16:-pad]
    length = int.from_bytes(content[:4], "big")
    message, rest = content[4:4 + length], content[4 + length:]
    if rest.decode() != receive_id:
        raise ReplyRejected(f"receive id {rest!r} is not {receive_id!r}")
    return json.loads(message)
