#!/usr/bin/env python3
"""An OAuth 1.0a (HMAC-SHA1, RFC 5849) signed GET, standard library only: what a SCADA client
of the quickstart gateway does. Usage: python3 examples/clients/oauth1_get.py CA_FILE [URL]
(consumer "scada" from examples/quickstart.yaml; local mode prints CA_FILE)."""
import base64, hashlib, hmac, secrets, ssl, sys, time, urllib.parse, urllib.request
url = sys.argv[2] if len(sys.argv) > 2 else "https://localhost:8443/things"
key, secret = "scada", "demo-only-consumer-secret"
q = lambda s: urllib.parse.quote(s, safe="~")
p = {"oauth_consumer_key": key, "oauth_nonce": secrets.token_hex(8), "oauth_signature_method": "HMAC-SHA1",
     "oauth_timestamp": str(int(time.time())), "oauth_version": "1.0"}
base = "&".join(["GET", q(url), q("&".join(f"{q(k)}={q(v)}" for k, v in sorted(p.items())))])
p["oauth_signature"] = base64.b64encode(hmac.new(f"{q(secret)}&".encode(), base.encode(), hashlib.sha1).digest()).decode()
req = urllib.request.Request(url, headers={"Authorization": "OAuth " + ", ".join(f'{k}="{q(v)}"' for k, v in p.items())})
print(urllib.request.urlopen(req, context=ssl.create_default_context(cafile=sys.argv[1])).read().decode())
