"""``python -m kubedns.webhook ...``: the webhook command without the main ``kubedns`` CLI."""

import argparse
import logging

from kubedns.webhook.cli import add_webhook_arguments, run_webhook

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
parser = argparse.ArgumentParser(prog="kubedns webhook")
add_webhook_arguments(parser)
raise SystemExit(run_webhook(parser.parse_args()))
