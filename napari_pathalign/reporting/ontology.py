"""The report ontology: how a department's reports say what they say, as data the user owns.

A JSON file (``ontology.schema.json`` beside this module; docs/your-own-reports.md) names the
organs, their classes (tumour or not) with the phrases that claim them and their zero-shot prompts,
the negative phrases, and the extent buckets. ``find_claims`` reads a sentence with it:

- a tumour class's phrase (or its name) claims that class (``diagnosis``); a non-tumour class's
  phrase claims the tissue covers at least 10 % of the tissue (``tissue``);
- a negative phrase claims no tumour class of the organ is present (``negative``, value ``tumour``),
  and a class phrase under negation ("No squamous cell carcinoma is seen", "adenocarcinoma is not
  identified") claims that class absent (``negative``, value the class);
- an extent phrase or a percentage claims the share of tissue taken by the organ's tumour classes
  (``extent``, value the bucket).

Phrases match whole words, case-insensitive, longest first; a match never overlaps a longer one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

MAX_BYTES = 2_000_000  # an ontology is a few kB; a larger file is the wrong file
NAMED_FRACTION = 0.10  # a named background tissue claims at least this share of the tissue
# a share of the tissue: "48%", "5-10%", "<10%", "up to 20%", "between 10% and 30%" (a range reads as its middle)
PERCENT = re.compile(
    r"(?P<bound><|>|≤|≥|up\s+to\s+|less\s+than\s+|under\s+|over\s+|more\s+than\s+)?"
    r"(?:between\s+)?(?P<a>\d+(?:\.\d+)?)\s*%?\s*(?:-|–|to|and)\s*(?P<b>\d+(?:\.\d+)?)\s*%"
    r"|(?P<bound1><|>|≤|≥|up\s+to\s+|less\s+than\s+|under\s+|over\s+|more\s+than\s+)?(?P<c>\d+(?:\.\d+)?)\s*%",
    re.IGNORECASE,
)
# a percentage is a claim about the tumour only in a sentence about the tumour ("Ki-67 80%" is not)
TUMOUR_CONTEXT = re.compile(r"\b(?:tumou?r\w*|neoplas\w*|carcinoma\w*|involv\w*|extent)\b", re.IGNORECASE)
# negation before a phrase, within its clause: a cue, then at most 4 filler words ("no residual invasive ...";
# "not seen in the lymphoid tissue" does not negate the tissue: "seen" is no filler)
_FILLER = (
    r"(?:any|residual|definite|definitive|obvious|evidence|of|sign|signs|a|an|the|further|viable|convincing|"
    r"identifiable|significant|or|invasive|metastatic|foci|focus|areas?)"
)
# ("cannot rule out", "not excluded" are uncertainty, not negation: they claim nothing either way)
NEGATION_BEFORE = re.compile(
    rf"\b(?:no|not|without|negative\s+for|free\s+of|absence\s+of|absent|nor|neither)\b(?:\W+{_FILLER}){{0,4}}\W*$",
    re.IGNORECASE,
)
# negation after it: "... is not seen", "...: not identified", "... is absent"
# ("is not well differentiated" is no negation)
NEGATION_AFTER = re.compile(
    r"^[\s:,-]*(?:(?:is|are|was|were)\s+)?(?:not\s+(?:seen|identified|present|detected|found|evident|demonstrated|"
    r"observed|visualised|visualized)\b|absent\b)",
    re.IGNORECASE,
)
UNCERTAIN = re.compile(
    r"\b(?:cannot\s+(?:be\s+)?(?:ruled?\s+out|excluded?)|not\s+excluded|rule\s+out|possible|suspicious\s+for)\b",
    re.IGNORECASE,
)
CLAUSE_END = re.compile(r"[.;!?,]|\bbut\b|\bhowever\b|\bwhereas\b", re.IGNORECASE)
LIST_JOIN = re.compile(r"^\s*(?:,|or|nor|,\s*or|,\s*nor)\s*$", re.IGNORECASE)  # "no X or Y": Y negated too


class OntologyError(ValueError):
    """An ontology that cannot be used; the message names the file, the field's path and what is accepted."""


@dataclass(frozen=True)
class ExtentBucket:
    """A bucket of the tumour's share of the tissue: [previous upper, upper)."""

    name: str
    lower: float  # inclusive (the previous bucket's upper; 0 for the first)
    upper: float  # exclusive (1.0 for the last: all of the tissue)
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class ReportClass:
    """A class an organ's reports name: a tumour (type or subtype) or a background tissue."""

    name: str
    tumour: bool
    phrases: tuple[str, ...]
    prompts: tuple[str, ...]  # zero-shot prompts (the phrases where the file gives none)
    label: str  # the class's name in the slides' class maps (demo data); ``name`` unless given
    synonyms: tuple[str, ...] = ()  # other names of the class in questions ('SCC', 'mets'); not claims of a report


@dataclass(frozen=True)
class Organ:
    """An organ (or specimen type), the words that name it, its classes and its negative phrases."""

    name: str
    words: tuple[str, ...]
    negative_phrases: tuple[str, ...]
    classes: tuple[ReportClass, ...]

    @property
    def tumour_classes(self) -> tuple[ReportClass, ...]:
        return tuple(c for c in self.classes if c.tumour)

    @property
    def tissue_classes(self) -> tuple[ReportClass, ...]:
        return tuple(c for c in self.classes if not c.tumour)

    def zero_shot_classes(self) -> dict[str, list[str]]:
        """{class name: prompts}: the organ's zero-shot set."""
        return {c.name: list(c.prompts) for c in self.classes}


@dataclass(frozen=True)
class FoundClaim:
    """A claim a sentence makes, as the ontology reads it (not yet checked against a slide)."""

    kind: str  # 'diagnosis', 'negative', 'tissue' or 'extent'
    value: str  # the class name; 'tumour' for a negative phrase (no tumour class); the extent bucket
    phrase: str  # the words of the sentence that state it
    start: int  # character span of the phrase in the sentence
    end: int
    organs: tuple[str, ...] = ()  # the organs whose phrase this is (several: the text or the slide decides)
    percent: float | None = None  # an extent given as a number (0-1)


@dataclass(frozen=True)
class Ontology:
    """A report ontology, checked; build it with ``load_ontology`` or ``Ontology.from_dict``."""

    name: str
    version: int
    extent: tuple[ExtentBucket, ...]
    organs: tuple[Organ, ...]
    source: str = ""  # the file it came from, for messages
    tumour_words: tuple[str, ...] = ()  # words of a question that ask about any tumour ('cancer'); () = the default
    phrases: tuple = field(
        default=(), repr=False, compare=False
    )  # (phrase lower-case, kind, value, organs), longest first

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, doc, source: str = "the ontology") -> Ontology:
        """Validate ``doc`` against the JSON Schema and the rules no schema states; OntologyError names the field."""
        _validate_schema(doc, source)
        buckets, lower = [], 0.0
        for i, b in enumerate(doc["extent"]):
            upper = float(b["upper"])
            if upper <= lower:
                raise OntologyError(
                    f"{source}: extent[{i}] ('{b['name']}') has upper {upper:g}, not above the previous bucket's "
                    f"{lower:g}; extent buckets go in increasing order of 'upper'"
                )
            buckets.append(ExtentBucket(b["name"], lower, upper, _strip(b["phrases"])))
            lower = upper
        if buckets[-1].upper < 1.0:
            raise OntologyError(
                f"{source}: the last extent bucket ('{buckets[-1].name}') ends at {buckets[-1].upper:g}; "
                "it must reach 1.0 (all of the tissue)"
            )
        organs = []
        for o in doc["organs"]:
            classes = tuple(
                ReportClass(
                    c["name"],
                    bool(c["tumour"]),
                    _strip(c["phrases"]),
                    _strip(c.get("prompts") or c["phrases"]),
                    c.get("label", c["name"]),
                    _strip(c.get("synonyms", [])),
                )
                for c in o["classes"]
            )
            organs.append(Organ(o["name"], _strip(o["words"]), _strip(o.get("negative_phrases", [])), classes))
        onto = cls(
            doc["name"], int(doc["version"]), tuple(buckets), tuple(organs), source, _strip(doc.get("tumour_words", []))
        )
        _check_names_and_phrases(onto, source)
        object.__setattr__(onto, "phrases", _phrase_table(onto))
        return onto

    def to_dict(self) -> dict:
        """The ontology as its JSON document (stored with a trained model)."""
        return {
            "name": self.name,
            "version": self.version,
            **({"tumour_words": list(self.tumour_words)} if self.tumour_words else {}),
            "extent": [{"name": b.name, "upper": b.upper, "phrases": list(b.phrases)} for b in self.extent],
            "organs": [
                {
                    "name": o.name,
                    "words": list(o.words),
                    "negative_phrases": list(o.negative_phrases),
                    "classes": [
                        {"name": c.name, "tumour": c.tumour, "phrases": list(c.phrases), "prompts": list(c.prompts)}
                        | ({"label": c.label} if c.label != c.name else {})
                        | ({"synonyms": list(c.synonyms)} if c.synonyms else {})
                        for c in o.classes
                    ],
                }
                for o in self.organs
            ],
        }

    # ------------------------------------------------------------------ reading
    def class_sets(self) -> tuple[dict[str, dict[str, list[str]]], str]:
        """Zero-shot class sets from the ontology, and the default one: 'diagnosis' (every tumour class's
        prompts against the negative phrases) and one set per organ (its classes)."""
        tumour = [p for o in self.organs for c in o.tumour_classes for p in c.prompts]
        negative = [p for o in self.organs for p in o.negative_phrases]
        sets = {"diagnosis": {"tumour": list(dict.fromkeys(tumour)), "no tumour": list(dict.fromkeys(negative))}}
        sets.update({o.name: o.zero_shot_classes() for o in self.organs})
        if not tumour:  # no tumour class at all: the organs' sets only
            del sets["diagnosis"]
            return sets, next(iter(sets))
        if not negative:  # an ontology without negative phrases: the diagnosis set is its tumour classes
            sets["diagnosis"] = {c.name: list(c.prompts) for o in self.organs for c in o.tumour_classes}
        return sets, "diagnosis"

    def organ(self, name: str) -> Organ:
        for o in self.organs:
            if o.name == name:
                return o
        raise KeyError(f"no organ {name!r} in ontology {self.name!r}; it has {[o.name for o in self.organs]}")

    def organ_mentions(self, text: str, class_phrases: bool = True) -> dict[str, int]:
        """{organ: how many of its words (and, with ``class_phrases``, its classes' phrases) the text uses}."""
        low = text.lower()
        hits = {}
        for o in self.organs:
            words = o.words + (tuple(p for c in o.classes for p in c.phrases) if class_phrases else ())
            hits[o.name] = sum(bool(re.search(rf"\b{re.escape(w.lower())}\b", low)) for w in words)
        return hits

    def organs_named(self, text: str) -> tuple[str, ...]:
        """The organs whose words (or class phrases) the text uses, in the ontology's order."""
        return tuple(name for name, hits in self.organ_mentions(text).items() if hits)

    def bucket(self, fraction: float) -> str | None:
        """The extent bucket of a tumour share of the tissue; None when there is no tumour (0)."""
        if fraction <= 0:
            return None
        return next((b.name for b in self.extent if fraction < b.upper), self.extent[-1].name)

    def find_claims(self, sentence: str) -> list[FoundClaim]:
        """The claims a sentence makes, in reading order (see the module's docstring)."""
        if not isinstance(sentence, str):
            raise ValueError(f"a sentence is text, got {type(sentence).__name__}")
        low = sentence.lower()
        taken = []  # spans already claimed by a longer phrase
        found = []
        for phrase, kind, value, organs in self.phrases:
            words = r"\s+".join(re.escape(w) for w in phrase.split())  # line breaks, double or odd spaces match too
            for m in re.finditer(rf"(?<!\w){words}(?!\w)", low):
                s, e = m.span()
                if any(s < te and ts < e for ts, te in taken):
                    continue
                taken.append((s, e))
                if kind in ("diagnosis", "tissue", "extent") and _uncertain(low, s, e):
                    continue  # "cannot rule out X" claims neither X nor its absence
                negated = kind in ("diagnosis", "tissue", "extent") and _negated(low, s, e)
                if negated and kind == "extent":
                    continue  # "no extensive involvement" names no bucket
                found.append(FoundClaim("negative" if negated else kind, value, sentence[s:e], s, e, organs))
        found.sort(key=lambda c: c.start)
        for a, b in zip(found, found[1:]):  # "no adenocarcinoma or fibrous stroma": the list shares the negation
            if a.kind == "negative" and b.kind in ("diagnosis", "tissue") and LIST_JOIN.match(low[a.end : b.start]):
                found[found.index(b)] = FoundClaim("negative", b.value, b.phrase, b.start, b.end, b.organs)
        about_tumour = TUMOUR_CONTEXT.search(low) or any(c.kind in ("diagnosis", "extent") for c in found)
        for m in PERCENT.finditer(sentence):
            s, e = m.span()
            if any(s < te and ts < e for ts, te in taken) or not about_tumour:
                continue
            share = _share(m)
            if share is not None and 0 < share <= 1:
                found.append(FoundClaim("extent", self.bucket(share), m.group(0), s, e, (), share))
        return sorted(found, key=lambda c: c.start)


def load_ontology(path=None) -> Ontology:
    """The ontology in a JSON file (None: the embedded model's, ``resources/embedded_ontology.json``)."""
    if path is None:
        return _embedded()
    path = Path(path)
    if not path.is_file():
        raise OntologyError(f"ontology file {path} does not exist; pass a JSON file (docs/your-own-reports.md)")
    return _read_once(str(path.resolve()), path.stat().st_mtime_ns)  # read again only when the file changes


@lru_cache(maxsize=16)
def _read_once(path: str, mtime_ns: int) -> Ontology:
    return _read(Path(path))


@lru_cache(maxsize=1)
def _embedded() -> Ontology:
    from napari_pathalign.core.resources import RESOURCES

    return _read(RESOURCES / "embedded_ontology.json")


def _read(path: Path) -> Ontology:
    if not path.is_file():
        raise OntologyError(f"ontology file {path} does not exist; pass a JSON file (docs/your-own-reports.md)")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise OntologyError(f"{path} is {size:,} bytes; an ontology is a small JSON file (under {MAX_BYTES:,} bytes)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise OntologyError(f"{path} is not UTF-8 text; an ontology is a JSON file") from None
    except json.JSONDecodeError as exc:
        raise OntologyError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return Ontology.from_dict(doc, str(path))


def schema() -> dict:
    """The JSON Schema of an ontology file (shipped beside this module)."""
    return json.loads((Path(__file__).with_name("ontology.schema.json")).read_text())


# ---------------------------------------------------------------------- checks
def _validate_schema(doc, source: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = (
            "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path).lstrip(".") or "the top level"
        )
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise OntologyError(f"{source}: {where}: {e.message}{more}")


def _check_names_and_phrases(onto: Ontology, source: str) -> None:
    """Names unique where they must be; no phrase that claims two things."""
    buckets = [b.name for b in onto.extent]
    if len(set(buckets)) != len(buckets):
        raise OntologyError(f"{source}: extent: two buckets share a name ({buckets})")
    names = [o.name for o in onto.organs]
    if len(set(names)) != len(names):
        raise OntologyError(f"{source}: organs: two organs share a name ({names}); each organ needs its own")
    claims: dict[str, str] = {}  # phrase -> what it claims

    def claim(phrase: str, what: str, where: str) -> None:
        key = phrase.lower()
        if key in claims and claims[key] != what:
            raise OntologyError(
                f"{source}: {where}: the phrase {phrase!r} also stands for {claims[key]}; a phrase may claim "
                "one thing only (move it to one of them)"
            )
        claims[key] = what

    for i, b in enumerate(onto.extent):
        for p in b.phrases:
            claim(p, f"extent '{b.name}'", f"extent[{i}].phrases")
    for i, o in enumerate(onto.organs):
        cls_names = [c.name for c in o.classes]
        if len(set(cls_names)) != len(cls_names):
            raise OntologyError(f"{source}: organs[{i}] ('{o.name}'): two classes share a name ({cls_names})")
        labels = [c.label for c in o.classes]
        if len(set(labels)) != len(labels):
            raise OntologyError(
                f"{source}: organs[{i}] ('{o.name}'): two classes share a label ({labels}); each class of an organ "
                "needs its own label (its name in the class maps and the measurement head)"
            )
        for p in o.negative_phrases:  # the same negative phrase may serve several organs
            claim(p, "no tumour", f"organs[{i}].negative_phrases")
        for j, c in enumerate(o.classes):
            for p in c.phrases:
                claim(p, f"class '{c.name}' of '{o.name}'", f"organs[{i}].classes[{j}].phrases")


def _phrase_table(onto: Ontology) -> tuple:
    """(phrase lower-case, kind, value, organs), longest first; a phrase shared by organs lists them all."""
    rows: dict[tuple[str, str, str], list[str]] = {}
    for b in onto.extent:
        for p in b.phrases:
            rows.setdefault((p.lower(), "extent", b.name), [])
    for o in onto.organs:
        for p in o.negative_phrases:
            rows.setdefault((p.lower(), "negative", "tumour"), []).append(o.name)
        for c in o.classes:
            for p in c.phrases:
                rows.setdefault((p.lower(), "diagnosis" if c.tumour else "tissue", c.name), []).append(o.name)
    explicit = {p for p, _, _ in rows}
    for o in onto.organs:  # a class's own name claims it too, unless a phrase already means something with it
        for c in o.classes:
            if c.name.lower() not in explicit:
                rows.setdefault((c.name.lower(), "diagnosis" if c.tumour else "tissue", c.name), []).append(o.name)
    table = [(p, k, v, tuple(organs)) for (p, k, v), organs in rows.items()]
    return tuple(sorted(table, key=lambda r: (-len(r[0]), r[0])))


def _share(m: re.Match) -> float | None:
    """The share of tissue a PERCENT match states: a range reads as its middle, '<10%' as just under 10 %."""
    if m.group("c") is not None:
        value = float(m.group("c")) / 100
        bound = (m.group("bound1") or "").strip().lower()
    else:
        value = (float(m.group("a")) + float(m.group("b"))) / 200
        bound = (m.group("bound") or "").strip().lower()
    if bound in ("<", "≤", "up to", "less than", "under"):
        return value * 0.999 if value > 0 else None
    if bound in (">", "≥", "over", "more than"):
        return min(value * 1.001, 1.0)
    return value


def _clause(low: str, start: int, end: int) -> tuple[str, str]:
    """The text of the phrase's clause before it and after it."""
    before = low[:start]
    cut = max((m.end() for m in CLAUSE_END.finditer(before)), default=0)
    after = low[end:]
    stop = CLAUSE_END.search(after)
    return before[cut:], after[: stop.start()] if stop else after


def _uncertain(low: str, start: int, end: int) -> bool:
    """Whether the phrase sits in an uncertain clause ("cannot rule out", "not excluded", "suspicious for")."""
    before, after = _clause(low, start, end)
    return bool(UNCERTAIN.search(before + " " + after))


def _negated(low: str, start: int, end: int) -> bool:
    """Whether a negation governs the phrase at [start, end) within its clause."""
    before, after = _clause(low, start, end)
    return bool(NEGATION_BEFORE.search(before) or NEGATION_AFTER.search(after))


def _strip(items) -> tuple[str, ...]:
    return tuple(s.strip() for s in items)
