"""digest: build a daily newsletter digest from a story store and send it once to every reader.

The folders read as the pipeline, each importing only from the families below it (import-linter
holds this direction; `make lint` checks it):

- the core, at the top of `digest/`: `config`, `errors`, `models`, `clock`, `store`,
  `backups`, `text`, `addresses`, `zones`, `tokens`, `urls`, `schedule`, `invocation`;
- `newsroom/`: stories in, and the story table;
- `edition/`: select, render once, check, and keep the frozen edition;
- `delivery/` and `readers/` beside it: the ledger, batches and transports; the readers' list,
  subscriptions, sign-up, preferences and privacy;
- `feedback/`: the Event Webhook, the events it brings, the report; `archive/` beside it:
  recipient-free web copies, each newsletter's days, pages, feeds and the static export;
- the shells last: `cli`, `web`, `wsgi`, `studio`, `run`, `preview`, `lineup`, `status`,
  `demo`, `scaffold`.
"""

__version__ = "0.1.0"
