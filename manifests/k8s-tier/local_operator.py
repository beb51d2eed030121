"""Turn an operator's rendered install manifests into what the k8s tier applies when the
operator runs as a local process instead of as a Deployment in the cluster.

Reads multi-document YAML on stdin, writes it on stdout with two changes and nothing else:

- the operator's ``Deployment`` is dropped (the tier runs the same binary on the host);
- every admission webhook's ``clientConfig.service`` becomes ``clientConfig.url``
  ``https://NAME.NAMESPACE.svc:PORT/PATH``: the API server resolves that name to 127.0.0.1
  (up.sh runs it with a hosts file saying so), and the name is the one the operator's own
  certificate is issued for, so TLS is verified exactly as in a cluster.

    python local_operator.py --deployment training-operator --webhook-port 29443 < in.yaml
"""

from __future__ import annotations

import argparse
import sys

import yaml

WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def localize(docs: list[dict], deployment: str, webhook_port: int) -> tuple[list[dict], list[str]]:
    """The documents to apply, and the webhook host names the API server must resolve locally."""
    out, hosts = [], []
    for doc in docs:
        if not doc:
            continue
        if doc.get("kind") == "Deployment" and doc["metadata"]["name"] == deployment:
            continue
        if doc.get("kind") in WEBHOOK_KINDS:
            for hook in doc.get("webhooks") or []:
                service = hook["clientConfig"].pop("service", None)
                if service is None:
                    continue
                host = f"{service['name']}.{service['namespace']}.svc"
                hook["clientConfig"]["url"] = f"https://{host}:{webhook_port}{service.get('path', '/')}"
                if host not in hosts:
                    hosts.append(host)
        out.append(doc)
    return out, hosts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployment", required=True, help="name of the operator's Deployment to drop")
    parser.add_argument(
        "--webhook-port", type=int, required=True, help="port the local operator serves webhooks on"
    )
    parser.add_argument("--hosts-out", help="write the webhook host names here, one per line")
    args = parser.parse_args(argv)
    docs, hosts = localize(list(yaml.safe_load_all(sys.stdin)), args.deployment, args.webhook_port)
    if not any(d.get("kind") in WEBHOOK_KINDS for d in docs):
        print("local_operator: no webhook configuration in the input", file=sys.stderr)
        return 2
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    if args.hosts_out:
        with open(args.hosts_out, "w", encoding="utf-8") as f:
            f.write("".join(f"{h}\n" for h in hosts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
