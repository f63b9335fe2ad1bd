#!/usr/bin/env python3
"""Write the embedded default dataset: human-readable dates -> ISO 8601 (``2026-11-26``).

Deterministic for a seed.  Sources come in many formats and orderings (English, German, French and
Spanish month and day names, numeric forms, ordinals), from about 6 to about 40 characters, so a
batch of them carries a lot of padding.  Only unambiguous formats are used: the numeric forms are
all day-first or year-first, and two-digit years mean 1950-2049.  No source appears in two splits.

    python scripts/make_dates.py --out data/dates --seed 26
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
from pathlib import Path
from typing import Callable

MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"],
}
DAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "de": ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"],
    "fr": ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"],
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
}
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def month(d: dt.date, lang: str, short: bool = False) -> str:
    name = MONTHS[lang][d.month - 1]
    return name[:3] if short else name


def day_name(d: dt.date, lang: str, short: bool = False) -> str:
    name = DAYS[lang][d.weekday()]
    return name[: 2 if lang == "de" else 3] if short else name


def two_digit_year_ok(d: dt.date) -> bool:
    return 1950 <= d.year <= 2049


# Each format: (needs a two-digit-year date, render).
FORMATS: list[tuple[bool, Callable[[dt.date], str]]] = [
    (False, lambda d: f"{day_name(d, 'en', True)} {d.day} {month(d, 'en', True)} {d.year}"),
    (False, lambda d: f"{month(d, 'en').lower()} {ordinal(d.day)}, {d.year}"),
    (False, lambda d: f"{month(d, 'en')} {d.day}, {d.year}"),
    (False, lambda d: f"{day_name(d, 'en')}, {month(d, 'en')} {d.day}, {d.year}"),
    (False, lambda d: f"the {ordinal(d.day)} of {month(d, 'en')} {d.year}"),
    (False, lambda d: f"{day_name(d, 'en')}, the {ordinal(d.day)} of {month(d, 'en')} {d.year}"),
    (False, lambda d: f"{d.day} {month(d, 'en', True).upper()} {d.year}"),
    (False, lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}"),
    (False, lambda d: f"{d.day}/{d.month}/{d.year}"),
    (True, lambda d: f"{d.day}/{d.month}/{d.year % 100:02d}"),
    (False, lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}"),
    (True, lambda d: f"{d.day}.{d.month}.{d.year % 100:02d}"),
    (False, lambda d: f"{d.year} {d.month:02d} {d.day:02d}"),
    (False, lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}"),
    (False, lambda d: f"{d.year}{d.month:02d}{d.day:02d}"),
    (False, lambda d: f"{d.day} {ROMAN[d.month - 1]} {d.year}"),
    (False, lambda d: f"{d.day}. {month(d, 'de')} {d.year}"),
    (False, lambda d: f"{day_name(d, 'de')}, {d.day}. {month(d, 'de')} {d.year}"),
    (False, lambda d: f"{day_name(d, 'de', True)}. {d.day}. {month(d, 'de', True)}. {d.year}"),
    (False, lambda d: f"{d.day} {month(d, 'fr')} {d.year}"),
    (False, lambda d: f"{day_name(d, 'fr')} {d.day} {month(d, 'fr')} {d.year}"),
    (False, lambda d: f"le {d.day} {month(d, 'fr')} {d.year}"),
    (False, lambda d: f"{d.day} de {month(d, 'es')} de {d.year}"),
    (False, lambda d: f"{day_name(d, 'es')}, {d.day} de {month(d, 'es')} de {d.year}"),
    (False, lambda d: f"{d.day}-{month(d, 'en', True)}-{d.year}"),
    (True, lambda d: f"{d.day} {month(d, 'en', True)} '{d.year % 100:02d}"),
]


def random_date(rng: random.Random) -> dt.date:
    start, end = dt.date(1900, 1, 1).toordinal(), dt.date(2099, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(start, end))


def make_pairs(count: int, rng: random.Random, taken: set[str]) -> list[tuple[str, str]]:
    pairs = []
    while len(pairs) < count:
        date = random_date(rng)
        needs_two_digit, render = FORMATS[rng.randrange(len(FORMATS))]
        if needs_two_digit and not two_digit_year_ok(date):
            continue
        source = render(date)
        if source in taken:
            continue
        taken.add(source)
        pairs.append((source, date.isoformat()))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "dates")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--sizes", type=int, nargs=3, default=(20000, 1000, 1000), metavar=("TRAIN", "VALID", "TEST"))
    args = parser.parse_args()
    rng, taken = random.Random(args.seed), set()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, size in zip(("train", "valid", "test"), args.sizes):
        pairs = make_pairs(size, rng, taken)
        (args.out / f"{split}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
        lengths = [len(s) for s, _ in pairs]
        print(f"{split}: {len(pairs)} pairs, source length {min(lengths)}-{max(lengths)} characters")


if __name__ == "__main__":
    main()
