"""``manage.py dlq list|replay|purge``: the dead letters of the outbox (see outbox/deadletters.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Dead letters: events whose handlers failed past OUTBOX_MAX_RETRIES retries (dead outbox rows, and "
        "with BROKER_URL the RabbitMQ .XQ queue). list; replay --id X ... | --all; purge [--id X ...]."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "replay", "purge"])
        parser.add_argument("--id", dest="ids", type=int, action="append", default=[], help="An event id (repeatable).")
        parser.add_argument("--all", action="store_true", help="Every dead letter.")
        parser.add_argument("--traceback-lines", type=int, default=12, help="list: lines of each error shown (0: all).")

    def handle(self, *args, action: str, ids: list[int], all: bool, traceback_lines: int, **options):
        from outbox import deadletters

        if action == "list":
            letters = deadletters.list_dead()
            for letter in letters:
                when = letter.dead_at.isoformat(timespec="seconds") if letter.dead_at else "?"
                self.stdout.write(
                    f"#{letter.event_id} {letter.type} source={letter.source} attempts={letter.attempts} "
                    f"dead_at={when} key={letter.key or '-'} handlers={','.join(letter.handlers) or '?'}"
                )
                lines = letter.error.rstrip().splitlines()
                if traceback_lines:
                    lines = lines[-traceback_lines:]
                for line in lines:
                    self.stdout.write(f"    {line}")
            self.stdout.write(f"{len(letters)} dead letter(s)")
            return
        if ids and all:
            raise CommandError("--id and --all exclude each other")
        if action == "replay" and not (ids or all):
            raise CommandError("dlq replay needs --id X (repeatable) or --all")
        selection = set(ids) if ids else None  # a bare purge empties the dead letters
        if action == "replay":
            self.stdout.write(f"replayed {deadletters.replay(selection)} dead letter(s)")
        else:
            self.stdout.write(f"purged {deadletters.purge(selection)} dead letter(s)")
