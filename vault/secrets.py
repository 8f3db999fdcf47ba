"""Find secrets in the bytes about to enter the vault, fingerprint them, and redact them.

A secret is never returned, logged or put in an error: a finding carries its kind, a stable
fingerprint (a salted hash, cut short), where it is ("line 12", "row memories:42") and byte
offsets for redaction, nothing else.

Detection runs regex rules over the whole file's bytes at once (C speed, no Python loop per
line; every rule starts with a literal, so the regex engine skips ahead): the provider patterns
of Yelp's detect-secrets plugins (AWS, GitHub, GitLab, Slack, Stripe, OpenAI, Twilio,
SendGrid, ...), imported on first use, plus our own rules for what they miss or cut short
(Anthropic, OpenAI project keys, fine-grained GitHub tokens, full-length Stripe keys, whole PEM
blocks, JWTs, bearer headers), plus a field scanner for `password=`, `"api_key": ...` and the
like, whose values must look like a password or, for token and key fields, be random.
High-entropy strings are only looked for in such fields: hashes, UUIDs and git ids elsewhere
are normal in agent memory; an AWS secret key, which has no prefix, is looked for near an AWS
access key id or the words "aws" / "secret access key". A vault SQLite dump is scanned cell by
cell (text literals decoded, BLOB and CAST(X'..' AS TEXT) cells from their hex) and located by
table and rowid. A full-text index the dump keeps as its own tables (contentless, or on a
tokenizer only its application has) holds its words lower-cased and split in BLOBs: those words
are listed (fts5vocab, fts4aux on a copy in memory) and checked one by one, by every token
pattern in any case and by randomness; an index cannot take a marker, so a finding there holds
the file back under `policy = "redact"` too.

Bytes that are not UTF-8 are scanned all the same: Latin-1 text, a file with a stray NUL, UTF-16
(scanned with its NULs taken out, so that `s\0k\0-\0` is found), binary data (only its printable
runs, and only for token patterns: a field scanner would find `pw=` in random bytes). A marker
replaces a secret in text (in UTF-16 text, as UTF-16); binary data cannot take one without
breaking its format, so a finding there blocks the file even under `policy = "redact"`.

Fingerprints are salted with a random salt made once per install and kept in the data dir
(never in the vault), so whoever holds the vault or its remote cannot test guesses against them.
"""

from __future__ import annotations

import binascii
import json
import math
import operator
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress, count
from typing import TYPE_CHECKING, Any, NamedTuple

from vault.errors import UsageError, VaultError
from vault.sources import DUMP_HEADER
from vault.textkind import text_like

if TYPE_CHECKING:
    from pathlib import Path

    from vault.config import Config, SecretsSettings
    from vault.repo import VaultRepo

ALLOW_FILE = "secrets-allow.json"
SALT_FILE = "secret-salt"  # in the data dir (VAULT_HOME), beside the vault, never in it
FINGERPRINT_LEN = 12
# The salt of vault <= 0.x, a constant: fingerprints made with it can be checked offline by
# anyone. Kept only to honour allow-list entries written with it (see _Allowed).
_LEGACY_SALT = b"vault-secret\0"
_SALT_BYTES = 32
_SALTS: dict[str, bytes] = {}  # data dir -> its salt, read once per process
# Pattern texts, compiled on first use through re's cache: compiling them at import would cost
# every `vault` command milliseconds.
_REDACTED = rb"\[REDACTED:[a-z0-9-]+:[0-9a-f]{12}\]"
REDACTION_PATTERN = _REDACTED  # (what a marker looks like, for sync's comparisons)
_HEX_FP = r"[0-9a-f]{8,64}"


@dataclass(frozen=True)
class Finding:
    """One secret in scanned bytes: its kind, fingerprint, where it is; never the value."""

    kind: str
    fingerprint: str
    locator: str  # "line 12", or "row memories:42" in a SQLite dump
    start: int  # byte offsets of the secret in the scanned data (for redact)
    end: int
    # How a marker is written in the secret's place: "ascii", "utf-16-le" or "utf-16-be" (in
    # UTF-16 text), with "hex:" before it inside a dump's X'...' literal.
    encoding: str = "ascii"
    redactable: bool = True  # False in binary data: a marker would break its format
    # Why it cannot take a marker, when not redactable and not because of binary data.
    note: str = ""


@dataclass(frozen=True)
class SourceFinding:
    """A secret in a source file as it is now."""

    fingerprint: str
    kind: str
    path: str
    locator: str


@dataclass(frozen=True)
class HistoryFinding:
    """A secret in the vault's history: the file, and the oldest and newest commits holding it."""

    fingerprint: str
    kind: str
    path: str
    first_commit: str
    last_commit: str
    locator: str
    commits: int = 1


@dataclass(frozen=True)
class Screened:
    """What a sync may commit for one file after the secret scan, and why."""

    data: bytes | None  # None: blocked; the vault keeps the file's last clean version
    findings: tuple[Finding, ...] = ()
    redacted: bool = False
    note: str = ""  # why a file was blocked although the policy is redact

    @property
    def reason(self) -> str:
        """One line naming each secret by kind, place and fingerprint (for Skipped and logs)."""
        text = describe(self.findings)
        return f"{text}; {self.note}" if self.note else text


# --- public API ----------------------------------------------------------------------------


def fingerprint(secret: str | bytes) -> str:
    """The stable short fingerprint of a secret value (SHA-256 salted per install, cut short)."""
    return _digest(_salt(), secret)


def legacy_fingerprint(secret: str | bytes) -> str:
    """The fingerprint older versions made (constant salt): for allow-list entries made then."""
    return _digest(_LEGACY_SALT, secret)


def load_salt(home: Path) -> bytes:
    """This install's fingerprint salt, from home/secret-salt; made there (0600) the first time."""
    import time

    path = home / SALT_FILE
    hint = (f"{path} keeps secret fingerprints stable; if it is damaged, delete it "
            "(fingerprints in allow lists made since must then be allowed again)")
    for _ in range(50):
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            made = _make_salt(home, path)
            if made is not None:
                return made
            continue  # another process made it meanwhile: read theirs
        except OSError as exc:
            raise VaultError(f"cannot read {path}: {exc.strerror}", hint=hint) from None
        value = text.strip()
        if re.fullmatch(rb"[0-9a-f]{64}", value):
            return bytes.fromhex(value.decode("ascii"))
        if not text:  # being written, on a filesystem without hard links (see _make_salt)
            time.sleep(0.02)
            continue
        raise VaultError(f"{path}: not a salt (64 hex characters expected)", hint=hint)
    raise VaultError(f"{path} stays empty", hint=hint)


def _make_salt(home: Path, path: Path) -> bytes | None:
    """Create the salt file atomically; None when another process created it first."""
    import os

    from vault.fsutil import fsync_dir

    salt = os.urandom(_SALT_BYTES)
    tmp = home / f".{SALT_FILE}.{os.getpid()}.vault-tmp"
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            tmp.unlink()  # left by a crash of a process with our pid
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, salt.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # A link, unlike a rename, never replaces a salt another process made meanwhile
            # (fingerprints it has shown would change); readers never see a partial file.
            os.link(tmp, path)
        except FileExistsError:
            return None
        except OSError:  # a filesystem without hard links: create the name exclusively
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                return None
            try:
                os.write(fd, salt.hex().encode("ascii") + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(home)
    except OSError as exc:
        raise VaultError(f"cannot create {path}: {exc.strerror}",
                         hint="the data dir must be writable (VAULT_HOME)") from None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
    return salt


def _salt() -> bytes:
    from vault.config import vault_home

    home = vault_home()
    salt = _SALTS.get(str(home))
    if salt is None:
        salt = _SALTS[str(home)] = load_salt(home)
    return salt


def _digest(salt: bytes, secret: str | bytes) -> str:
    import hashlib

    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hashlib.sha256(salt + raw).hexdigest()[:FINGERPRINT_LEN]


def scan_bytes(data: bytes, *, path: str,
               allow_fingerprints: frozenset[str] = frozenset()) -> list[Finding]:
    """Find the secrets in a file's vault bytes (a SQLite dump cell by cell, text line by line)."""
    del path  # the content decides; callers pass it so that rules may use it later
    return _findings(data, allow_fingerprints, fingerprint)


def _findings(data: bytes, allow_fingerprints: frozenset[str],
              fingerprint_of: Callable[[str], str]) -> list[Finding]:
    if not data:
        return []
    rules = _rules()
    if data.startswith(DUMP_HEADER):
        found = _scan_dump(data, rules)
    else:
        spots = sorted(_scan_data(data, rules), key=lambda s: s.hit.start)
        found = [_Located(spot.hit, f"line {n}", spot.secret, spot.encoding, spot.redactable)
                 for spot, n in zip(spots, _line_numbers(data, [s.hit.start for s in spots]))]
    allowed = _Allowed(allow_fingerprints)
    findings = []
    for spot in found:
        value = _normal(spot.secret, spot.hit.kind)
        fp = fingerprint_of(value)
        if not allowed(fp, value):
            findings.append(Finding(spot.hit.kind, fp, spot.locator, spot.hit.start,
                                    spot.hit.end, spot.encoding, spot.redactable, spot.note))
    return findings


def redact(data: bytes, findings: Sequence[Finding]) -> bytes:
    """Put [REDACTED:<kind>:<fingerprint>] in place of each secret; JSON and dumps stay valid."""
    out: list[bytes] = []
    pos = 0
    for finding in sorted(findings, key=lambda f: (f.start, f.end)):
        if finding.start < pos:  # overlaps one already replaced (findings of two scans)
            pos = max(pos, finding.end)
            continue
        out.append(data[pos:finding.start])
        encoding = finding.encoding.removeprefix("hex:")
        text = marker(finding.kind, finding.fingerprint).encode(encoding)
        out.append(text.hex().encode("ascii") if finding.encoding.startswith("hex:") else text)
        pos = finding.end
    out.append(data[pos:])
    return b"".join(out)


def scrub(text: str) -> str:
    """Text with every secret in it redacted: for error messages, logs and alerts, just in case."""
    data = text.encode("utf-8", "surrogateescape")
    findings = _findings(data, frozenset(), _scrub_fingerprint)
    return redact(data, findings).decode("utf-8", "surrogateescape") if findings else text


def _scrub_fingerprint(value: str) -> str:
    """A fingerprint for a message; a message is scrubbed even when the salt cannot be had."""
    try:
        return fingerprint(value)
    except VaultError:
        import os

        salt = _SALTS.setdefault("", os.urandom(_SALT_BYTES))  # this process only
        return _digest(salt, value)


def marker(kind: str, fp: str) -> str:
    """The text that stands in for a redacted secret."""
    slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-") or "secret"
    return f"[REDACTED:{slug}:{fp}]"


def is_redacted(data: bytes) -> bool:
    """Tell whether bytes carry redaction markers (restore warns: those values cannot come back)."""
    if re.search(_REDACTED, data) is not None:
        return True
    if b"\x00" in data and re.search(_REDACTED, data.replace(b"\x00", b"")) is not None:
        return True  # in UTF-16 text
    # in a dump's BLOB or CAST cell, as hex (lower case, as the dump writes it; UTF-16 too)
    return data.startswith(DUMP_HEADER) and any(
        m in data for m in (_HEX_MARK, _HEX_MARK_LE, _HEX_MARK_BE))


def path_allowed(path: str, allow_paths: Sequence[str]) -> bool:
    """Tell whether a vault path matches one of the gitignore-style allow patterns."""
    if not allow_paths:
        return False
    return _matcher(tuple(allow_paths))(path)


def describe(findings: Sequence[Finding], limit: int = 5) -> str:
    """One line naming secrets by kind, place and fingerprint, never by value."""
    if not findings:
        return "no secrets found"
    parts = [f"{f.kind} at {f.locator} (fingerprint {f.fingerprint})" for f in findings[:limit]]
    more = f"; and {len(findings) - limit} more" if len(findings) > limit else ""
    noun = "secret" if len(findings) == 1 else f"{len(findings)} secrets"
    return f"{noun} found: " + "; ".join(parts) + more


def screen(data: bytes, *, path: str, settings: SecretsSettings,
           allowed: frozenset[str] = frozenset()) -> Screened:
    """Apply the [secrets] policy to one file's vault bytes: pass them, redact or block them."""
    if settings.policy == "allow" or path_allowed(path, settings.allow_paths):
        return Screened(data)
    findings = tuple(scan_bytes(data, path=path, allow_fingerprints=allowed))
    if not findings:
        return Screened(data)
    if settings.policy == "redact":
        if all(f.redactable for f in findings):
            return Screened(redact(data, findings), findings, redacted=True)
        why = dict.fromkeys(f.note or _BINARY_NOTE for f in findings if not f.redactable)
        return Screened(None, findings, note="blocked, not redacted: " + "; ".join(why))
    return Screened(None, findings)


_BINARY_NOTE = "binary data cannot take a marker in place of a secret without breaking its format"


def allowed_fingerprints(config: Config) -> frozenset[str]:
    """Fingerprints accepted as not secret: [secrets] allow_fingerprints and `vault secrets allow`."""
    configured = frozenset(fp.lower() for fp in config.secrets.allow_fingerprints)
    return configured | frozenset(_read_allow_file(config))


def allow_fingerprint(config: Config, fp: str) -> bool:
    """Record a fingerprint so later syncs accept it; False when it was already recorded."""
    from vault.fsutil import atomic_write
    from vault.repo import VaultRepo

    value = fp.strip().lower()
    if not re.fullmatch(_HEX_FP, value):
        raise UsageError(f"{fp!r} is not a fingerprint (hex, as `vault secrets scan` prints it)")
    VaultRepo.open(config.vault.path, config.vault.branch)  # no vault: NoVaultError, no write
    current = _read_allow_file(config)
    if value in current:
        return False
    path = config.state_dir / ALLOW_FILE
    document = {"version": 1, "fingerprints": sorted({*current, value})}
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"), mode=0o600)
    except OSError as exc:
        raise VaultError(f"cannot write {path}: {exc.strerror}") from None
    return True


@dataclass(frozen=True)
class SourceScan:
    """What a scan of the sources found, the files it could not scan (path, reason), and the
    sources it could not scan at all (name, message: a folder missing or unreadable)."""

    findings: list[SourceFinding]
    not_scanned: list[tuple[str, str]]
    failures: list[tuple[str, str]] = field(default_factory=list)


def scan_sources(config: Config, names: Sequence[str] = ()) -> SourceScan:
    """Scan every file of the configured sources as a sync would take it, writing nothing.

    A source whose folder cannot be read is listed in failures, and the others are scanned
    (as a sync syncs them)."""
    from vault.errors import SourceError
    from vault.snapshot import take_snapshot
    from vault.sources import scan_source

    known = {s.name: s for s in config.sources}
    for name in names:
        if name not in known:
            raise UsageError(f"no source named {name!r} (known: {', '.join(known) or 'none'})")
    allowed = allowed_fingerprints(config)
    found: list[SourceFinding] = []
    not_scanned: list[tuple[str, str]] = []
    failures: list[tuple[str, str]] = []
    for source in [known[n] for n in names] if names else config.sources:
        try:
            scan = scan_source(source, skip_dirs=(config.vault.path, config.home))
        except SourceError as exc:
            failures.append((source.name, exc.message))
            continue
        # What the walk itself could not take (a name that is not UTF-8, a link, a folder that
        # cannot be read) is not scanned either: said, as sync lists it, never passed over.
        prefix = config.prefix(source.name)
        not_scanned.extend((prefix + rel, reason) for rel, reason in scan.skipped
                           if not path_allowed(prefix + rel, config.secrets.allow_paths))
        not_scanned.extend((f"{prefix}{rel}/", "folder cannot be read")
                           for rel in scan.unreadable_dirs)
        for entry in scan.entries:
            vpath = config.prefix(source.name) + entry.rel
            if path_allowed(vpath, config.secrets.allow_paths):
                continue
            snap = take_snapshot(entry, config.snapshot, dry_run=True)  # (writes nothing)
            if snap.data is None:
                # (not synced either, for the same reason; one removed meanwhile is no file)
                if not snap.vanished:
                    not_scanned.append((vpath, snap.reason or "not readable"))
                continue
            found.extend(SourceFinding(f.fingerprint, f.kind, vpath, f.locator)
                         for f in scan_bytes(snap.data, path=vpath, allow_fingerprints=allowed))
    found.sort(key=lambda f: (f.fingerprint, f.path, f.locator))
    return SourceScan(found, sorted(not_scanned), failures)


def scan_history(repo: VaultRepo, *, allow_fingerprints: frozenset[str] = frozenset(),
                 allow_paths: Sequence[str] = ()) -> list[HistoryFinding]:
    """Scan every blob of every commit on the branch, each blob once; name first and last commit."""
    by_blob: dict[str, list[Finding]] = {}
    seen: dict[tuple[str, str], list[Any]] = {}  # (fp, path) -> [kind, locator, first, last, n]
    for info in repo.walk():  # newest first
        for path, (oid, mode) in repo.files(info.id).items():
            if mode == 0o160000 or path_allowed(path, allow_paths):
                continue  # a submodule entry names a commit, not a blob
            findings = by_blob.get(oid)
            if findings is None:
                findings = by_blob[oid] = scan_bytes(repo.read_blob(oid), path=path,
                                                     allow_fingerprints=allow_fingerprints)
            for f in findings:
                record = seen.get((f.fingerprint, path))
                if record is None:
                    seen[(f.fingerprint, path)] = [f.kind, f.locator, info.id, info.id, 1]
                elif record[2] != info.id:
                    record[2] = info.id  # an older commit: the walk goes back in time
                    record[4] += 1
    result = [HistoryFinding(fp, r[0], path, r[2], r[3], r[1], r[4])
              for (fp, path), r in seen.items()]
    result.sort(key=lambda f: (f.fingerprint, f.path))
    return result


# --- rules ----------------------------------------------------------------------------------

_Fix = Callable[[bytes, int, int], "tuple[int, int] | None"]


@dataclass(frozen=True)
class _Rule:
    """One pattern, which group is the secret, and what to check before believing it."""

    kind: str
    pattern: re.Pattern[bytes]
    group: int = 0
    priority: int = 3  # when two overlap: ours 4, library 3, generic 2, fields 1
    lowered: bool = False  # runs on the lower-cased copy (case-insensitive, same offsets)
    needles: tuple[bytes, ...] = ()  # a slow pattern runs only if one of these is in the text
    weak: bool = False  # short or common prefix: must not start inside a word
    extend: bool = False  # a library pattern without a right edge: take the whole token
    fix: _Fix | None = None  # moves the span (PEM dashes, bot id digits), or rejects it
    check: Callable[[bytes], bool] | None = None


@dataclass(frozen=True)
class _Rules:
    tokens: tuple[_Rule, ...]
    fields: tuple[re.Pattern[bytes], ...]  # one per keyword: a literal start is fast


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    kind: str
    priority: int


_CACHE: list[_Rules] = []

# detect-secrets plugins used: module, class, the kind we report, needles for a pattern that is
# slow on its own (case-insensitive or without a literal start). Left out on purpose:
# KeywordDetector and the high-entropy plugins (our field scanner replaces them: they flag
# every hash and id), IPPublicDetector (not a secret), ArtifactoryDetector (matches ordinary
# upper-case words), the IBM, Cloudant and SoftLayer field patterns (the field scanner covers
# them), and the JWT, private-key, Azure, Mailchimp and Telegram plugins, whose patterns cut
# the secret short or need a slow scan: our own rules below find those whole.
_LIBRARY: tuple[tuple[str, str, str, tuple[bytes, ...]], ...] = (
    ("aws", "AWSKeyDetector", "AWS access key", ()),
    ("basic_auth", "BasicAuthDetector", "password in URL", ()),
    ("discord", "DiscordBotTokenDetector", "Discord bot token", (b"discord",)),
    ("github_token", "GitHubTokenDetector", "GitHub token", ()),
    ("gitlab_token", "GitLabTokenDetector", "GitLab token", ()),
    ("npm", "NpmDetector", "npm token", (b"_authtoken",)),
    ("openai", "OpenAIDetector", "OpenAI API key", ()),
    ("pypi_token", "PypiTokenDetector", "PyPI token", ()),
    ("sendgrid", "SendGridDetector", "SendGrid API key", ()),
    ("slack", "SlackDetector", "Slack token", (b"xox", b"hooks.slack")),
    ("square_oauth", "SquareOAuthDetector", "Square OAuth secret", ()),
    ("stripe", "StripeDetector", "Stripe secret key", (b"k_live_",)),
    ("twilio", "TwilioKeyDetector", "Twilio API key", ()),
)
# Library patterns that match inside ordinary words unless they start at a word edge.
_LIBRARY_WEAK = frozenset({"DiscordBotTokenDetector", "TwilioKeyDetector"})
# Library patterns whose group 1 is the secret (elsewhere a group is only a prefix: "(ghp|gho)_").
_LIBRARY_GROUP = frozenset({"BasicAuthDetector", "NpmDetector", "AWSKeyDetector"})

_PEM_BODY = (rb"(?:[\s\S]{0,20000}?-{4,5} ?END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)? ?-{4,5}"
             rb"|(?:(?:\r?\n|\\r\\n|\\n)[ \t]*[A-Za-z0-9+/=:,.\- ]{8,})*)")
# Our own rules: kind, pattern, group, weak. Each starts with a literal.
_OWN: tuple[tuple[str, bytes, int, bool], ...] = (
    ("Anthropic API key", rb"sk-ant-[A-Za-z0-9_\-]{20,}", 0, False),
    ("OpenAI API key", rb"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,}", 0, False),
    ("OpenAI API key", rb"sk-[A-Za-z0-9]{48}(?![A-Za-z0-9_\-])", 0, True),
    ("GitHub token", rb"gh[pousr]_[A-Za-z0-9]{36,255}", 0, False),
    ("GitHub token", rb"github_pat_[A-Za-z0-9_]{22,255}", 0, False),
    ("GitLab token", rb"gl(?:pat|dt|rt|ptt|ft|cbt|imt|soat)-[A-Za-z0-9_\-]{20,}", 0, False),
    ("Stripe secret key", rb"sk_(?:live|test)_[A-Za-z0-9]{16,}", 0, False),
    ("Stripe secret key", rb"rk_(?:live|test)_[A-Za-z0-9]{16,}", 0, False),
    ("Stripe webhook secret", rb"whsec_[A-Za-z0-9+/=]{24,}", 0, False),
    ("Slack token", rb"xox[abposer]-[A-Za-z0-9\-]{10,}", 0, False),
    ("Slack token", rb"xapp-\d-[A-Za-z0-9\-]{20,}", 0, False),
    ("Slack webhook",
     rb"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,}", 0, False),
    ("AWS access key", rb"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])", 0, True),
    ("Google API key", rb"AIza[0-9A-Za-z_\-]{35}", 0, True),
    ("Google OAuth client secret", rb"GOCSPX-[A-Za-z0-9_\-]{20,}", 0, False),
    ("Azure storage key", rb"AccountKey=([A-Za-z0-9+/]{86}==)", 1, False),
    ("Hugging Face token", rb"hf_[A-Za-z0-9]{34,}", 0, True),
    ("npm token", rb"npm_[A-Za-z0-9]{36,}", 0, True),
    ("DigitalOcean token", rb"do[opr]_v1_[a-f0-9]{64}", 0, True),
    ("Shopify token", rb"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", 0, True),
    ("Mailchimp API key", rb"-us[0-9]{1,2}(?![0-9A-Za-z])", 0, False),
    ("Telegram bot token", rb":AA[0-9A-Za-z_\-]{33}(?![0-9A-Za-z_\-])", 0, False),
    # A private key is the whole block, BEGIN to END; a block cut off is taken as far as its
    # base64 lines go. Line breaks may be real, or \n escapes inside a JSON string.
    ("private key", rb"BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)? ?-{4,5}" + _PEM_BODY, 0, False),
    ("private key", rb"PuTTY-User-Key-File-\d: [\s\S]{0,20000}?Private-MAC: [0-9a-fA-F]+",
     0, False),
    ("JWT", rb"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*", 0, False),
)
# Field names: a keyword, more name characters, then the assignment: `password=`,
# `"api_key": `, `token: `, `\"secret\": ` (JSON inside a JSON string), `**Password**: `.
# Run on the lower-cased text.
_FIELD_WORDS = (b"pass", b"pw", b"secret", b"token", b"key", b"auth", b"credential", b"bearer")
_FIELD_TAIL = rb"[a-z0-9_.\-]*(?:\\?[\"'`]|\*\*)?[ \t]*(?::=|=>|=(?!=)|:(?!//))[ \t]*"

# (a password cannot hold an unescaped / @ ? # [ ]; no quote or < > either: the URL ends there)
_URL_PASSWORD = rb"://[^\s:/@\"<>\\]*:([^\s/@?#\[\]\"<>\\]{4,})@"
_KEY_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_TOKEN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_HEX_LOWER = frozenset(b"0123456789abcdef")
_DIGITS = frozenset(b"0123456789")


def _rules() -> _Rules:
    """Compile the rules once per process (detect-secrets is imported here, not at import)."""
    if _CACHE:
        return _CACHE[0]
    fixes: dict[str, _Fix] = {"private key": _pem_start, "Mailchimp API key": _mailchimp_start,
                              "Telegram bot token": _telegram_start}
    checks: dict[str, Callable[[bytes], bool]] = {"JWT": _jwt_ok}
    tokens = [_Rule(kind, re.compile(pattern), group, priority=4, weak=weak,
                    fix=fixes.get(kind), check=checks.get(kind))
              for kind, pattern, group, weak in _OWN]
    tokens.append(_Rule("bearer token", re.compile(rb"bearer[ \t]+([a-z0-9._~+/\-]{16,}=*)"), 1,
                        priority=2, lowered=True, check=_looks_random_bytes))
    tokens.append(_Rule("token in URL", re.compile(rb"://([A-Za-z0-9_\-]{20,})@"), 1,
                        priority=2, check=_looks_random_bytes))
    # scheme://user:password@host, the password with any of RFC 3986's sub-delims (!$&'()*+,;=)
    # and the user maybe empty (redis://:password@host), which detect-secrets' pattern misses.
    tokens.append(_Rule("password in URL", re.compile(_URL_PASSWORD), 1, check=_url_password_ok))
    tokens.append(_Rule("basic auth credentials",
                        re.compile(rb"basic[ \t]+([a-z0-9+/]{12,}={0,2})(?![a-z0-9+/=])"), 1,
                        priority=2, lowered=True, check=_basic_ok))
    for class_name, kind, needles, text, flags in _library_patterns():
        tokens.append(_library_rule(class_name, kind, needles, re.compile(text, flags)))
    rules = _Rules(tuple(tokens), tuple(re.compile(w + _FIELD_TAIL) for w in _FIELD_WORDS))
    _CACHE.append(rules)
    return rules


_LibraryPattern = tuple[str, str, tuple[bytes, ...], bytes, int]  # class, kind, needles, re, flags
PATTERN_CACHE = "secret-patterns.marshal"


def _library_patterns() -> list[_LibraryPattern]:
    """The detect-secrets patterns we use, from a cache file when the plugins have not changed.

    Importing detect-secrets costs ~170 ms (it imports requests); its patterns are plain regex
    texts, so they are read out once per installed version and kept, keyed by the stat of the
    plugin files they came from. Any doubt (no cache, other files, unreadable) imports again.
    """
    import marshal

    stamp = _library_stamp()
    cache = _pattern_cache_path()
    if stamp is not None:
        try:
            saved = marshal.loads(cache.read_bytes())
            if isinstance(saved, tuple) and len(saved) == 2 and saved[0] == stamp:
                return list(saved[1])
        except (OSError, ValueError, EOFError, TypeError):
            pass
    patterns = _import_library_patterns()
    if stamp is not None:
        from vault.config import vault_home
        from vault.fsutil import atomic_write, private_folder

        try:
            private_folder(cache.parent, vault_home())
            payload: Any = (stamp, tuple(patterns))
            atomic_write(cache, marshal.dumps(payload), durable=False)
        except OSError:
            pass  # a cache: the next scan imports the library again
    return patterns


def _import_library_patterns() -> list[_LibraryPattern]:
    """Read the denylist patterns out of the detect-secrets plugin classes."""
    import importlib

    patterns: list[_LibraryPattern] = []
    try:
        for module_name, class_name, kind, needles in _LIBRARY:
            module = importlib.import_module(f"detect_secrets.plugins.{module_name}")
            detector = getattr(module, class_name, None)
            if detector is None:  # renamed or dropped upstream: our own rules still run
                continue
            for pattern in getattr(detector, "denylist", ()):
                compiled = _as_bytes(pattern)
                if compiled is not None:
                    patterns.append((class_name, kind, needles, compiled.pattern,
                                     compiled.flags))
    except ImportError as exc:
        raise VaultError(f"secret scanning needs the detect-secrets package ({exc})",
                         hint="pip install 'detect-secrets>=1.5,<2'") from None
    return patterns


def _library_stamp() -> tuple[object, ...] | None:
    """What the cached patterns depend on: Python, our plugin list, the plugin files' stat."""
    import importlib.util
    import os
    import sys

    try:
        spec = importlib.util.find_spec("detect_secrets")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    plugins = os.path.join(list(spec.submodule_search_locations)[0], "plugins")
    files = []
    for module_name, _, _, _ in _LIBRARY:
        try:
            st = os.stat(os.path.join(plugins, module_name + ".py"))
        except OSError:
            return None
        files.append((module_name, st.st_size, st.st_mtime_ns, st.st_ino))
    return (1, sys.version, plugins, tuple(files), repr(_LIBRARY))


def _pattern_cache_path() -> Path:
    from vault.config import vault_home

    return vault_home() / "cache" / PATTERN_CACHE


def _library_rule(class_name: str, kind: str, needles: tuple[bytes, ...],
                  pattern: re.Pattern[bytes]) -> _Rule:
    """A detect-secrets pattern as one of our rules."""
    group = 1 if class_name in _LIBRARY_GROUP and pattern.groups else 0
    if class_name == "AWSKeyDetector" and group:
        # aws...key = "<40 characters>": the secret key, found after a case-insensitive scan
        kind, needles = "AWS secret key", (b"aws",)
    return _Rule(kind, pattern, group, needles=needles, weak=class_name in _LIBRARY_WEAK,
                 extend=group == 0,
                 check=_url_password_ok if class_name == "BasicAuthDetector" else None)


def _as_bytes(pattern: Any) -> re.Pattern[bytes] | None:
    """A library str pattern as the same bytes pattern (all of them are ASCII)."""
    try:
        text = pattern.pattern.encode("ascii")
        return re.compile(text, pattern.flags & ~re.UNICODE)
    except (AttributeError, UnicodeEncodeError, re.error):
        return None


# --- scanning ------------------------------------------------------------------------------


class _Spot(NamedTuple):
    """A secret in scanned data: where, its bytes as seen, how a marker would replace it."""

    hit: _Hit
    secret: bytes
    encoding: str  # ascii, utf-16-le, utf-16-be
    redactable: bool


class _Located(NamedTuple):
    hit: _Hit
    locator: str
    secret: bytes
    encoding: str
    redactable: bool
    note: str = ""  # why it cannot take a marker (see Finding.note)


# What a secret in binary data must sit in: a run of printable ASCII (as `strings` finds them).
_PRINTABLE_RUN = rb"[\t\n\r\x20-\x7e]{8,}"
_PRINTABLE_RUN_NUL = rb"[\x00\t\n\r\x20-\x7e]{8,}"


def _scan_data(data: bytes, rules: _Rules) -> list[_Spot]:
    """The secrets in any bytes: as they are, with JSON's escaped slashes read as slashes, and
    with their NULs taken out (UTF-16 text)."""
    text = text_like(data)
    spots = [_Spot(h, data[h.start:h.end], "ascii", text) for h in _scan_view(data, rules, text)]
    if b"\\/" in data:
        spots += _unescaped_slashes(data, rules, text, spots)
    if b"\x00" not in data:
        return spots
    bare = data.replace(b"\x00", b"")
    bare_text = text_like(bare)
    extra = _scan_view(bare, rules, bare_text)
    if not extra:
        return spots
    where = _NulMap(data)
    taken = [(s.hit.start, s.hit.end) for s in spots]
    for h in extra:
        first, last = where(h.start), where(h.end - 1)
        start, end, encoding = _utf16_span(data, first, last)
        if any(s < end and start < e for s, e in taken):
            continue  # found as it is already
        # A UTF-16 marker fits UTF-16 text; an ASCII one fits text with a stray NUL.
        ok = bare_text if encoding != "ascii" else text
        spots.append(_Spot(_Hit(start, end, h.kind, h.priority), bare[h.start:h.end],
                           encoding, ok))
    return spots


class _NulMap:
    """Where each byte of data with its NULs taken out is in data, in memory that does not grow
    with the NULs: a list entry per NUL took ~40 bytes of RAM for each NUL of a zero-filled or
    UTF-16 BLOB (a 500 MB one got sync killed). It keeps how many bytes are not NUL before
    each block of _NUL_BLOCK bytes, and where the NULs are in the few blocks last asked about
    (asked in order, each block is read once)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.kept = [0]  # bytes that are not NUL before each block
        for start in range(0, len(data), _NUL_BLOCK):
            end = min(start + _NUL_BLOCK, len(data))
            self.kept.append(self.kept[-1] + end - start - data.count(b"\x00", start, end))
        self.blocks: dict[int, list[int]] = {}

    def __call__(self, at: int) -> int:
        """Where byte at of the bytes without NULs is in data (past their end: as far past
        the end of data)."""
        if at >= self.kept[-1]:
            return at + len(self.data) - self.kept[-1]
        block = bisect_right(self.kept, at) - 1  # kept[block] <= at < kept[block + 1]
        start = block * _NUL_BLOCK
        at -= self.kept[block]  # among the block's bytes that are not NUL
        gaps = self.blocks.get(block)
        if gaps is None:
            if len(self.blocks) >= _NUL_BLOCKS_KEPT:
                self.blocks.clear()
            # where in the block's bytes without NULs each NUL was taken out (at C speed)
            chunk = self.data[start:start + _NUL_BLOCK]
            nuls = compress(range(len(chunk)), map(operator.not_, chunk))
            gaps = self.blocks[block] = list(map(operator.sub, nuls, count()))
        return start + at + bisect_right(gaps, at)


_NUL_BLOCK = 4096
_NUL_BLOCKS_KEPT = 64  # gaps lists of up to _NUL_BLOCK ints each


def _unescaped_slashes(data: bytes, rules: _Rules, text: bool,
                       spots: list[_Spot]) -> list[_Spot]:
    """The secrets found only once JSON's `\\/` is read as `/` (PHP's json_encode writes every
    slash so: `https:\\/\\/user:pass@host`, an AWS secret key with `\\/` in it). Each is
    placed over its escaped bytes, which a marker replaces whole; its fingerprint is the
    secret's own."""
    view = data.replace(b"\\/", b"/")
    extra = _scan_view(view, rules, text)
    if not extra:
        return []
    slashes = [m.start() for m in re.finditer(rb"\\/", data)]
    gaps = [at - i for i, at in enumerate(slashes)]  # where in view each `\\/` became `/`
    taken = [(s.hit.start, s.hit.end) for s in spots]
    found = []
    for h in extra:
        start = h.start + bisect_left(gaps, h.start)  # (a secret that starts with `/`: its `\\`)
        end = h.end + bisect_right(gaps, h.end - 1)
        if any(s < end and start < e for s, e in taken):
            continue  # found as it is already
        found.append(_Spot(_Hit(start, end, h.kind, h.priority), view[h.start:h.end], "ascii",
                           text))
    return found


def _utf16_span(data: bytes, first: int, last: int) -> tuple[int, int, str]:
    """The span of a secret found with the NULs taken out, and the UTF-16 form it is in."""
    chars, between = data[first:last + 1:2], data[first + 1:last:2]
    if (last - first) % 2 == 0 and 0 not in chars and between == bytes(len(between)):
        # c 0 c 0 ... c: UTF-16, each character with its NUL after it (little-endian) or
        # before it (big-endian); where both could be, either gives the same bytes.
        if data[last + 1:last + 2] == b"\x00":
            return first, last + 2, "utf-16-le"
        if first > 0 and data[first - 1] == 0:
            return first - 1, last + 1, "utf-16-be"
    return first, last + 1, "ascii"  # NULs here and there: the span holds them all


def _scan_view(view: bytes, rules: _Rules, text: bool) -> list[_Hit]:
    """Scan text whole; scan binary data's printable runs, for tokens only."""
    if text:
        return _scan(view, rules)
    buffer, starts, at = _printable_runs(view, _PRINTABLE_RUN)
    if not starts:
        return []
    hits = []
    for h in _scan(buffer, rules, text=False):
        i, j = bisect_right(at, h.start) - 1, bisect_right(at, h.end - 1) - 1
        hits.append(_Hit(starts[i] + h.start - at[i], starts[j] + h.end - at[j], h.kind,
                         h.priority))
    return hits


def _printable_runs(view: bytes, pattern: bytes) -> tuple[bytes, array[int], array[int]]:
    """The runs of view that pattern matches, joined by newlines; where each starts in view,
    and where in the joined bytes. Kept in arrays, 16 bytes a run, and joined without a list
    of the runs: a list of spans and one of pieces took ~30 bytes of RAM for each byte of a
    BLOB made of short runs."""
    starts, at = array("q"), array("q")
    joined = bytearray()
    whole = memoryview(view)
    for m in re.finditer(pattern, view):
        if at:
            joined += b"\n"
        starts.append(m.start())
        at.append(len(joined))
        joined += whole[m.start():m.end()]
    if len(at) == 1 and len(joined) == len(view):
        return view, starts, at  # one run, all of view: no copy
    return bytes(joined), starts, at


def _line_numbers(data: bytes, starts: list[int]) -> Iterator[int]:
    """The 1-based line number of each offset (sorted)."""
    line, pos = 1, 0
    for start in starts:
        line += data.count(b"\n", pos, start)
        pos = start
        yield line


def _scan(data: bytes, rules: _Rules, text: bool = True) -> list[_Hit]:
    """Every secret in the bytes, overlaps merged, each span safe to replace in JSON text.

    Fields (`password=...`) and AWS secret keys near their context are looked for in text
    only: in binary data `pw=` and a 40-character run turn up by chance.
    """
    lowered = data.lower()  # ASCII only: same length, same offsets
    hits: list[_Hit] = []
    for rule in rules.tokens:
        if rule.needles and not any(n in lowered for n in rule.needles):
            continue
        for m in rule.pattern.finditer(lowered if rule.lowered else data):
            start, end = m.span(rule.group)
            if start < 0 or end <= start:
                continue
            if rule.fix is not None:
                span = rule.fix(data, start, end)
                if span is None:
                    continue
                start, end = span
            if rule.weak and _glued(data, start):
                continue
            if rule.extend:
                while end < len(data) and data[end] in _TOKEN_BYTES:
                    end += 1
            if rule.check is not None and not rule.check(data[start:end]):
                continue
            hits.append(_Hit(start, end, rule.kind, rule.priority))
    done = -1
    fields = (m for p in rules.fields for m in p.finditer(lowered)) if text else iter(())
    for m in sorted(fields, key=_start):
        if m.start() < done:
            continue  # "secret_token:" was read from "secret"; "token" is the same field
        done = m.end()
        hit = _field(data, m)
        if hit is not None:
            hits.append(hit)
    if text:
        hits.extend(_aws_secrets(data, lowered))
    if b"[REDACTED:" in data:  # a marker's text (e.g. "password-assignment:") is no secret
        markers = [m.span() for m in re.finditer(_REDACTED, data)]
        hits = [h for h in hits if not any(s < h.end and h.start < e for s, e in markers)]
    safe = (_json_safe(data, h) for h in hits)
    return _merge([h for h in safe if h is not None])


def _start(m: re.Match[bytes]) -> int:
    return m.start()


# An AWS secret access key is 40 characters of base64 with no prefix: it is taken as one only
# near what names it (an access key id, "aws", "secret access key"), on its line or two lines
# either side, so that base64 and hashes elsewhere are left alone.
_AWS_SECRET = rb"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
_AWS_NEAR = 300  # bytes either side of the anchor at most
_AWS_LINES = 2
_LOWER_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789")
_B64_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _aws_anchors(lowered: bytes) -> list[tuple[int, int]]:
    """Where an access key id, "aws" or "secret access key" is (a literal first: fast)."""
    spans = []
    if b"aws" in lowered:
        spans += [m.span() for m in re.finditer(rb"aws(?![a-z])", lowered)
                  if m.start() == 0 or lowered[m.start() - 1] not in _LOWER_WORD]
    if b"access" in lowered:
        spans += [m.span() for m in re.finditer(rb"secret[ _\-]?access[ _\-]?key", lowered)]
    for prefix in (b"akia", b"asia", b"abia", b"acca", b"a3t"):
        if prefix in lowered:
            spans += [m.span() for m in re.finditer(prefix + rb"[a-z0-9]{%d}(?![a-z0-9])"
                                                    % (20 - len(prefix)), lowered)
                      if m.start() == 0 or lowered[m.start() - 1] not in _LOWER_WORD]
    return sorted(spans)


def _aws_key_like(token: bytes) -> bool:
    """A 40-character _AWS_SECRET match that looks like a key: both cases (hex digests, git
    ids and SHA-1, are 40 characters too) and random."""
    value = token.decode("ascii")
    return any(c.isupper() for c in value) and any(c.islower() for c in value) \
        and _looks_random(value)


def _aws_secrets(data: bytes, lowered: bytes) -> list[_Hit]:
    """AWS secret access keys within a few lines of an access key id or the words naming one."""
    hits: list[_Hit] = []
    done = 0
    for at, anchor_end in _aws_anchors(lowered):
        lo = at
        for _ in range(_AWS_LINES + 1):
            lo = max(data.rfind(b"\n", 0, lo), 0)
        hi = anchor_end
        for _ in range(_AWS_LINES + 1):
            newline = data.find(b"\n", hi)
            hi = len(data) if newline < 0 else newline + 1
        lo, hi = max(lo, at - _AWS_NEAR, done), min(hi, anchor_end + _AWS_NEAR)
        while hi < len(data) and data[hi] in _B64_BYTES:
            hi += 1  # a window never cuts a token: 40 characters of a longer one are none
        if lo >= hi:
            continue
        for m in re.compile(_AWS_SECRET).finditer(data, lo, hi):
            if _aws_key_like(m.group()):
                hits.append(_Hit(m.start(), m.end(), "AWS secret key", 3))
        done = hi
    return hits


def _glued(data: bytes, start: int) -> bool:
    """True when a match starts inside a word (after a JSON escape such as \\n it does not)."""
    if start == 0 or data[start - 1] not in _WORD_BYTES:
        return False
    return not (start >= 2 and data[start - 2] == 0x5C)


def _merge(hits: list[_Hit]) -> list[_Hit]:
    """Overlapping hits become one span (nothing of either is left), of the stronger kind."""
    hits.sort(key=lambda h: (h.start, -h.end))
    merged: list[_Hit] = []
    for hit in hits:
        if merged and hit.start < merged[-1].end:
            last = merged[-1]
            kind = hit.kind if hit.priority > last.priority else last.kind
            merged[-1] = _Hit(last.start, max(last.end, hit.end), kind,
                              max(last.priority, hit.priority))
        else:
            merged.append(hit)
    return merged


def _json_safe(data: bytes, hit: _Hit) -> _Hit | None:
    """Cut a span at an unescaped quote or a half escape, so it stays inside one JSON string."""
    i, end = hit.start, hit.end
    while i < end:
        c = data[i]
        if c == 0x22:  # "
            end = i
            break
        if c == 0x5C:  # backslash: an escape is replaced whole or not at all
            width = 6 if data[i + 1:i + 2] == b"u" else 2
            if i + width > end:
                end = i
                break
            i += width
        else:
            i += 1
    if end - hit.start < 4:
        return None
    return hit if end == hit.end else _Hit(hit.start, end, hit.kind, hit.priority)


def _pem_start(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """Start a key block at its dashes ('-----BEGIN'); no dashes, no key block."""
    s = start
    while s > 0 and start - s < 6 and data[s - 1] in b"- ":
        s -= 1
    return (s, end) if data.count(b"-", s, start) >= 4 else None


def _mailchimp_start(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """A Mailchimp key is 32 hex characters before its '-usN' data-centre suffix."""
    s = start - 32
    if s < 0 or not all(c in _HEX_LOWER for c in data[s:start]):
        return None
    return None if s > 0 and data[s - 1] in _WORD_BYTES else (s, end)


def _telegram_start(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """A Telegram bot token starts with the bot's numeric id (8 to 10 digits) before ':AA'."""
    s = start
    while s > 0 and start - s <= 10 and data[s - 1] in _DIGITS:
        s -= 1
    if not 8 <= start - s <= 10 or (s > 0 and data[s - 1] in _WORD_BYTES):
        return None
    return s, end


# --- fields: password=..., "api_key": "..." ---------------------------------------------------

_PASSWORD_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "passcode", "pass",
                             "passw", "pw"})
_SECRET_WORDS = frozenset({"secret", "secrets", "token", "apikey", "credential", "credentials",
                           "auth", "authorization", "bearer", "privatekey", "accesstoken",
                           "authtoken", "apitoken", "refreshtoken", "sessionkey", "secretkey",
                           "accesskey", "clientsecret"})
_KEY_QUALIFIERS = frozenset({"api", "access", "secret", "private", "client", "signing",
                             "encryption", "master", "auth", "session", "account", "service",
                             "license", "admin", "app", "webhook", "deploy", "ssh", "consumer"})
# A field whose last word is one of these holds a fact about a secret, not the secret.
_NOT_SECRET_LAST = frozenset({
    "id", "ids", "count", "counts", "type", "types", "name", "names", "url", "uri", "urls",
    "endpoint", "path", "file", "dir", "len", "length", "size", "limit", "limits", "max", "min",
    "hash", "hashed", "sha", "digest", "at", "time", "date", "expires", "expiry", "expiration",
    "ttl", "usage", "used", "budget", "estimate", "field", "fields", "header", "env", "var",
    "hint", "policy", "method", "methods", "scope", "scopes", "format", "kind", "label", "ref",
    "version", "enabled", "disabled", "required", "provider", "mode", "rotation", "rotated",
    "status", "source", "location", "prefix", "issuer", "audience", "algorithm", "alg", "set",
    "changed", "reset", "strength", "rules", "flow", "error", "errors", "valid", "present",
    "fingerprint", "index", "position", "board", "word", "words", "stroke", "strokes", "frame",
})
_PLACEHOLDERS = frozenset({
    "password", "passwd", "pass", "secret", "token", "changeme", "change_me", "changeit", "none",
    "null", "nil", "true", "false", "undefined", "redacted", "hidden", "example", "sample",
    "test", "dummy", "placeholder", "yourpassword", "your_password", "mypassword", "required",
    "optional", "string", "str", "text", "empty", "unset", "todo", "tbd", "n/a", "na",
    "secret123", "password123", "default", "masked", "removed", "omitted", "notset", "not_set",
})
_INDIRECT = ("$", "{{", "${", "%(", "<", "[redacted", "os.environ", "process.env", "env.", "env[",
             "getenv", "settings.", "config.", "self.", "op://", "vault:", "keyring", "secrets.",
             "http://", "https://", "***", "...")
_WORD_SPLIT = r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_DATE = r"\d{4}-\d{2}-\d{2}"
_QUOTED = {0x22: rb'"((?:[^"\\\n]|\\.)*)"', 0x27: rb"'([^'\n]*)'", 0x60: rb"`([^`\n]*)`"}
# get_password(), os.environ["X"], settings.db.password: code that fetches the secret.
_REFERENCE = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*[(\[].*|[A-Za-z_]+(?:\.[A-Za-z_]+)+"
# An unquoted value ends at whitespace, a quote or a backslash (a JSON escape: the value sits in
# a JSON string), and at the delimiters passed (an apostrophe inside is part of it).
_UNQUOTED = rb"[^\s\"'`\\%s][^\s\"`\\%s]*"
_FIELD_DELIMITERS = b",;&"  # of a token or key field: `token=abc,user=x`
# A password may hold any of these, so it ends only where the field's own list does: the
# delimiter before its name, `?` for a URL's query string (`?user=bob&password=...&next=`).
_LIST_DELIMITERS = {0x3F: b"&;#", 0x26: b"&;#", 0x3B: b";", 0x2C: b","}
# ... or where a `&name=` / `;name=` after it starts the next field of a query or connection
# string written without one before the password (`password=x1&remember=1`).
_NEXT_FIELD = rb"[&;][A-Za-z_][A-Za-z0-9_.\-]*="


def _field(data: bytes, m: re.Match[bytes]) -> _Hit | None:
    """A secret assigned to a password, token or key field, if the value looks like one."""
    key_start = m.start()
    while key_start > 0 and data[key_start - 1] in _KEY_BYTES:
        key_start -= 1
    key_end = m.start()
    while key_end < len(data) and data[key_end] in _KEY_BYTES:
        key_end += 1
    key = data[key_start:key_end].decode("ascii")
    kind = _classify(key)
    if kind is None and key_start >= 2 and data[key_start - 1] == 0x20:
        # "API key: ...", "access token = ...": the word before names the field
        before = key_start - 1
        while before > 0 and data[before - 1] in _WORD_BYTES:
            before -= 1
        kind = _classify(data[before:key_start - 1].decode("ascii") + "_" + key)
    if kind is None:
        return None
    if kind == "password assignment":
        before = data[key_start - 1] if key_start else 0
        span = _value_span(data, m.end(), _LIST_DELIMITERS.get(before, b""))
    else:
        span = _value_span(data, m.end(), _FIELD_DELIMITERS)
    if span is None:
        return None
    start, end, quoted = span
    value = data[start:end].decode("utf-8", "replace")
    if kind == "password assignment":
        return _Hit(start, end, kind, 1) if _password_ok(value, quoted) else None
    return _Hit(start, end, kind, 1) if _looks_random(value) else None


def _classify(key: str) -> str | None:
    """The kind of secret a field of this name holds, or None for a name that names none."""
    words = [w.lower() for w in re.findall(_WORD_SPLIT, key)]
    if not words or words[-1] in _NOT_SECRET_LAST or "tokens" in words:
        return None  # max_tokens, token_count, password_hash, api_key_id
    found = set(words)
    if found & _PASSWORD_WORDS:
        return "password assignment"
    if "aws" in found and found & {"secret", "secretkey"}:
        return "AWS secret key"
    if found & _SECRET_WORDS or ("key" in found and found & _KEY_QUALIFIERS):
        return "high-entropy secret"
    return None


def _value_span(data: bytes, pos: int, delimiters: bytes) -> tuple[int, int, bool] | None:
    """Where the assigned value is: inside its quotes, or up to whitespace or one of the
    delimiters when unquoted."""
    while data.startswith((b"**", b"* ", b" "), pos):  # **Password:** hunter2
        pos += 1
    if data.startswith(b'\\"', pos):  # JSON text inside a JSON string: \"value\"
        end = data.find(b'\\"', pos + 2)
        newline = data.find(b"\n", pos)
        if end < 0 or 0 <= newline < end:
            return None
        return pos + 2, end, True
    quote = data[pos] if pos < len(data) else 0
    if quote in _QUOTED:
        m = re.compile(_QUOTED[quote]).match(data, pos)
        if m is None:
            return None
        if m.end(1) > m.start(1):
            return m.start(1), m.end(1), True
        pos = m.end()  # '' or "" before the value: read on past it
    stops = re.escape(delimiters)
    m = re.compile(_UNQUOTED % (stops, stops)).match(data, pos)
    if m is None:
        return None
    end = m.end()
    if not delimiters:
        following = re.compile(_NEXT_FIELD).search(data, pos, end)
        end = following.start() if following else end
    while end > pos and data[end - 1] in b".,;)]}:!?*'":
        end -= 1
    return (pos, end, False) if end > pos else None


def _placeholder(value: str) -> bool:
    """A template, a reference to where the secret is, or an example: not the secret itself."""
    lower = value.lower()
    return (lower in _PLACEHOLDERS or lower.startswith(_INDIRECT) or len(set(value)) < 3
            or (lower[:1] in ("{", "<", "(") and lower[-1:] in ("}", ">", ")"))
            or re.fullmatch(_REFERENCE, value) is not None)


def _password_ok(value: str, quoted: bool) -> bool:
    """A real-looking password: not a placeholder, a reference or a word of prose."""
    value = value.strip()
    if not 6 <= len(value) <= 256 or _placeholder(value):
        return False
    if quoted:
        return len(value.split()) <= 4  # a sentence in a password field is prose
    if value.isalpha() and (value.islower() or value.istitle() or value.isupper()):
        return len(value) >= 16  # "password: rotated" in a note is a word, not a password
    if value.isdigit():
        return len(value) >= 8
    return True


def _looks_random(value: str) -> bool:
    """A token-like value: long, no spaces, letters and digits, high entropy, not an id."""
    if not 16 <= len(value) <= 1024 or _placeholder(value):
        return False
    if any(c.isspace() for c in value) or re.fullmatch(_UUID, value) or re.match(_DATE, value):
        return False
    # A token has a long stretch of base64 mixing letters and digits; words and ids joined by
    # separators ("agent:main:telegram:dm:123456789", "refresh-token-v2-2026") have none.
    if not any(len(run) >= 10 and any(c.isdigit() for c in run)
               and any(c.isalpha() for c in run) for run in re.findall(r"[A-Za-z0-9+/]+", value)):
        return False
    if _sequential(value):
        return False
    return _entropy(value) >= 3.0


def _looks_random_bytes(value: bytes) -> bool:
    return _looks_random(value.decode("ascii", "replace"))


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts: dict[str, int] = {}
    for c in value:
        counts[c] = counts.get(c, 0) + 1
    n = len(value)
    return -sum(k / n * math.log2(k / n) for k in counts.values())


_SEQUENCES = ("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/",
              "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWXYZ+/",
              "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
              "01234567890123456789", "0123456789ABCDEF0123456789ABCDEF")


def _sequential(value: str) -> bool:
    """'abcdef0123...' is a made-up example, not a secret (detect-secrets' heuristic)."""
    upper = value.upper()
    return any(upper in s for s in _SEQUENCES)


def _jwt_ok(token: bytes) -> bool:
    """Header and payload decode to JSON (detect-secrets' JWT check)."""
    import base64
    import binascii

    for part in token.split(b".")[:2]:
        try:
            json.loads(base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4)))
        except (binascii.Error, ValueError):
            return False
    return True


def _basic_ok(value: bytes) -> bool:
    """An HTTP Basic credential decodes to user:password."""
    import base64
    import binascii

    try:
        text = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    user, sep, password = text.partition(":")
    return bool(sep and user and len(password) >= 4 and text.isprintable())


def _url_password_ok(value: bytes) -> bool:
    """The password part of scheme://user:password@host, unless a placeholder."""
    text = value.decode("utf-8", "replace")
    return len(text) >= 4 and not _placeholder(text)


# --- SQLite dumps ---------------------------------------------------------------------------

_INSERT = rb'INSERT INTO ("(?:[^"]|"")*")\("(?:[^"]|"")*"(?:,"(?:[^"]|"")*")*\) VALUES\('
# Tokens of a dump line that can hold quotes: BLOBs and quoted names (skipped whole, so that a
# quote inside one never starts a cell), and text cells: literals and char(N) joined by ||.
_CELL = (rb"[Xx]'[^']*'|\"(?:[^\"]|\"\")*\"|(?:'(?:[^']|'')*'|char\(\d+\))"
         rb"(?:\|\|(?:'(?:[^']|'')*'|char\(\d+\)))*")
_CELL_PART = rb"'((?:[^']|'')*)'|char\((\d+)\)"
_HEX_CELL = rb"[Xx]'([0-9a-fA-F]+)'"
# "[REDACTED:" as the dump writes it in a BLOB or CAST cell (ASCII, UTF-16 LE and BE).
_HEX_MARK = b"[REDACTED:".hex().encode("ascii")
_HEX_MARK_LE = b"[REDACTED:".decode("ascii").encode("utf-16-le").hex().encode("ascii")
_HEX_MARK_BE = b"[REDACTED:".decode("ascii").encode("utf-16-be").hex().encode("ascii")


def _scan_dump(data: bytes, rules: _Rules) -> list[_Located]:
    """Scan a dump's cells one by one, on the lines where anything could be: text literals
    decoded, BLOB and CAST(X'...' AS TEXT) cells from their hex; and the words of each
    full-text index the dump keeps as its own tables."""
    # A full-text index kept as its tables holds its words in BLOBs, lower-cased and split
    # by its tokenizer: its words are listed and checked instead of those BLOBs' bytes.
    indexes = _kept_indexes(data) if _SCHEMA_ROW in data else []
    found = [spot for kept in indexes for spot in _index_findings(data, kept, rules)]
    listed = {table for kept in indexes for table in kept.shadows}
    # A secret in the rows an index takes its words from is in that index too: a marker in
    # the row would leave it there.
    feeds = {kept.fed: kept.name for kept in indexes if kept.fed is not None}
    # Any match, checked or not, marks a line; its cells, decoded, then say what and where.
    lowered = data.lower()
    marks = _marks(data, lowered, rules, text=True)
    marks.extend(m.start() for m in re.finditer(rb"char\(0\)", data))  # UTF-16 in a text cell
    marks.extend(_hex_marks(data, rules))
    if not marks:
        return found
    marks.sort()
    starts = [0] + [m.end() for m in re.finditer(rb"\n", data)]
    lines = sorted({bisect_right(starts, at) - 1 for at in marks})
    for index in lines:
        base = starts[index]
        line = data[base:starts[index + 1] - 1] if index + 1 < len(starts) else data[base:]
        insert = re.compile(_INSERT).match(line)
        table = _unquote_name(insert.group(1)) if insert else ""
        if table in listed:
            continue
        locator = _row_locator(line, insert, index + 1)
        row = _row_findings(line, base, insert, locator, marks, rules)
        if table in feeds:
            note = f"the full-text index {feeds[table]} holds its words too, {_INDEX_WHY}"
            row = [spot._replace(redactable=False, note=note) for spot in row]
        found.extend(row)
    return found


def _unquote_name(quoted: bytes) -> str:
    return quoted[1:-1].replace(b'""', b'"').decode("utf-8", "replace")


def _row_findings(line: bytes, base: int, insert: re.Match[bytes] | None, locator: str,
                  marks: list[int], rules: _Rules) -> list[_Located]:
    """The secrets in the cells of one dump line that marks point into."""
    found: list[_Located] = []
    # A row is one record: an AWS key id or a column named for one (aws_secret_access_key)
    # anywhere in it is the context for a secret key in any of its text cells.
    row_aws = bool(_aws_anchors(line.lower()))
    for cell in re.compile(_CELL).finditer(line, insert.end() if insert else 0):
        head = cell.group()[:1]
        if head == b'"':
            continue
        first = bisect_left(marks, base + cell.start())
        if first == len(marks) or marks[first] >= base + cell.end():
            # nothing in this cell (a mark was in another of the row)
            if row_aws and head not in (b"X", b"x"):
                found.extend(_aws_secrets_in_cell(cell, base, locator))
            continue
        if head in (b"X", b"x"):
            # Bytes of a BLOB, or text that is not UTF-8: a marker goes in as hex, so
            # the dump stays SQL that rebuilds (a BLOB of JSON may change its length).
            at = base + cell.start() + 2
            for spot in _scan_data(binascii.a2b_hex(cell.group()[2:-1]), rules):
                hit = _Hit(at + 2 * spot.hit.start, at + 2 * spot.hit.end, spot.hit.kind,
                           spot.hit.priority)
                found.append(_Located(hit, locator, spot.secret, "hex:" + spot.encoding,
                                      spot.redactable))
            continue
        value, where = _decode_cell(cell)
        for spot in _scan_data(value, rules):
            hit = spot.hit
            start, end = base + where.start(hit.start), base + where.end(hit.end)
            # A text literal takes an ASCII marker whatever the text was.
            found.append(_Located(_Hit(start, end, hit.kind, hit.priority), locator,
                                  spot.secret, "ascii", True))
    return found


def _aws_secrets_in_cell(cell: re.Match[bytes], base: int, locator: str) -> list[_Located]:
    """AWS secret keys in a text cell of a row that names AWS elsewhere (see _aws_secrets)."""
    value, where = _decode_cell(cell)
    found = []
    for m in re.compile(_AWS_SECRET).finditer(value):
        if _aws_key_like(m.group()):
            hit = _Hit(base + where.start(m.start()), base + where.end(m.end()),
                       "AWS secret key", 3)
            found.append(_Located(hit, locator, m.group(), "ascii", True))
    return found


def _marks(data: bytes, lowered: bytes, rules: _Rules, *, text: bool) -> list[int]:
    """Where any pattern matches, checked or not (for text, field names and AWS words too)."""
    marks = [m.start() for rule in rules.tokens
             if not rule.needles or any(n in lowered for n in rule.needles)
             for m in rule.pattern.finditer(lowered if rule.lowered else data)]
    if text:
        marks.extend(m.start() for p in rules.fields for m in p.finditer(lowered))
        marks.extend(at for at, _ in _aws_anchors(lowered))
    return marks


def _hex_marks(data: bytes, rules: _Rules) -> list[int]:
    """Where in the dump a hex cell starts whose bytes hold anything a pattern could match.

    All cells are decoded into one buffer and looked at in one pass (and once more with the
    NULs taken out, for UTF-16): a pass per cell would cost more than the patterns.
    """
    cells, parts = [], []  # where each cell starts in the dump, and its bytes
    for m in re.finditer(_HEX_CELL, data):
        if not len(m.group(1)) % 2:
            cells.append(m.start())
            parts.append(binascii.a2b_hex(m.group(1)))
    if not cells:
        return []
    buffer = b"\n\n".join(parts)
    offsets = list(accumulate((len(p) + 2 for p in parts[:-1]), initial=0))
    del parts
    # Every pattern starts (and a token lies) in a run of printable ASCII, NULs between its
    # characters in UTF-16: only those runs are looked at, so float32 BLOBs, mostly not
    # printable, are passed over at C speed.
    joined, starts, at = _printable_runs(buffer, _PRINTABLE_RUN_NUL)
    if not starts:
        return []
    del buffer
    found = _marks(joined, joined.lower(), rules, text=True)
    if b"\x00" in joined:
        bare = joined.replace(b"\x00", b"")
        bare_marks = _marks(bare, bare.lower(), rules, text=True)
        if bare_marks:
            where = _NulMap(joined)
            found.extend(where(m) for m in sorted(bare_marks))
    cell_at = []
    for mark in found:
        i = bisect_right(at, mark) - 1
        cell_at.append(cells[bisect_right(offsets, starts[i] + mark - at[i]) - 1])
    return cell_at


def _row_locator(line: bytes, insert: re.Match[bytes] | None, number: int) -> str:
    """'row memories:42' for an INSERT whose first value is the integer rowid, else the line."""
    if insert is None:
        return f"line {number}"
    table = _unquote_name(insert.group(1))
    first = re.match(rb"-?\d+(?=[,)])", line[insert.end():])
    if first is None:
        return f"row {table} (dump line {number})"
    return f"row {table}:{first.group().decode('ascii')}"


class _CellMap:
    """Where each byte of a decoded text cell came from in its dump line."""

    def __init__(self) -> None:
        self.value_at: list[int] = []  # segment starts in the value
        self.raw_at: list[int] = []  # ... and in the line
        self.width: list[int] = []  # 0: copied byte for byte; n: one byte written as n ('', char)

    def add(self, value_at: int, raw_at: int, width: int) -> None:
        self.value_at.append(value_at)
        self.raw_at.append(raw_at)
        self.width.append(width)

    def start(self, v: int) -> int:
        """The line offset where value byte v starts."""
        i = bisect_right(self.value_at, v) - 1
        return self.raw_at[i] + (v - self.value_at[i] if self.width[i] == 0 else 0)

    def end(self, v: int) -> int:
        """The line offset just after value byte v - 1 (the end of a span)."""
        i = bisect_right(self.value_at, v - 1) - 1
        if self.width[i] == 0:
            return self.raw_at[i] + v - self.value_at[i]
        return self.raw_at[i] + self.width[i]


def _decode_cell(cell: re.Match[bytes]) -> tuple[bytes, _CellMap]:
    """A text cell's value ('a''b'||char(10)||'c' -> a'b, newline, c) and where it came from."""
    value = bytearray()
    where = _CellMap()
    for part in re.compile(_CELL_PART).finditer(cell.group()):
        at = cell.start() + part.start()
        if part.group(2) is not None:  # char(N): a newline, CR or NUL spliced in
            where.add(len(value), at, len(part.group()))
            value += chr(int(part.group(2))).encode("utf-8")
            continue
        raw = at + 1
        for i, piece in enumerate(part.group(1).split(b"''")):
            if i:  # the quote written as ''
                where.add(len(value), raw, 2)
                value += b"'"
                raw += 2
            if piece:
                where.add(len(value), raw, 0)
                value += piece
                raw += len(piece)
    return bytes(value), where


# --- full-text indexes kept as their own tables ------------------------------------------

# How the dump writes the schema row of a virtual table it keeps as its shadow tables (a
# contentless full-text index, or one on a tokenizer only its application has).
_SCHEMA_ROW = b'INSERT INTO "sqlite_schema"("type","name","tbl_name","rootpage","sql") VALUES('
_FTS_SHADOWS = {"fts5": ("data", "idx", "config", "docsize"),
                "fts4": ("segments", "segdir", "docsize", "stat"),
                "fts3": ("segments", "segdir", "docsize", "stat")}
# Options dropped to read an index's words here: its tokenizer (the application's own, maybe)
# and where its rows are (words are read from the index alone).
_FTS_DROPPED = frozenset({"tokenize", "content", "content_rowid", "compress", "uncompress"})
_INDEX_WHY = "as search terms, which cannot take a marker"
_INDEX_NOTE = f"a full-text index keeps the words it indexes {_INDEX_WHY}"
_TERM_CACHE: list[_Rules] = []


@dataclass(frozen=True)
class _KeptIndex:
    """A full-text index whose own tables (its words in BLOBs) the dump keeps as they are."""

    name: str
    module: str  # fts5, fts4 or fts3
    sql: str  # its CREATE statement without a tokenizer or content table, to read it here
    line: tuple[int, int]  # where its schema row is in the dump (a finding's place)
    shadows: tuple[str, ...]  # the tables that hold its words
    fed: str | None  # the table its words come from, when the dump holds it


def _kept_indexes(data: bytes) -> list[_KeptIndex]:
    """The full-text indexes a dump keeps as their own tables, from their schema rows."""
    from vault.sqlite_dump import _parse_virtual_table, unquote

    found = []
    for m in re.finditer(rb"^" + re.escape(_SCHEMA_ROW) + rb".*$", data, re.MULTILINE):
        cells = [_decode_cell(c)[0].decode("utf-8", "replace")
                 for c in re.compile(_CELL).finditer(m.group(), len(_SCHEMA_ROW))]
        if len(cells) != 4:
            continue
        name, sql = cells[1], cells[3]
        module, args = _parse_virtual_table(sql)
        if module not in _FTS_SHADOWS:
            continue
        kept, content = [], None
        for arg in args:
            option = unquote(arg[0]).lower() if arg else ""
            if len(arg) >= 2 and arg[1] == "=" and option == "content":
                content = unquote(" ".join(arg[2:]))
            named = len(arg) >= 2 and (arg[1] == "=" or option == "tokenize")  # fts3: tokenize x
            if named and option in _FTS_DROPPED and not (option == "content" and content == ""):
                continue
            kept.append(_sql_text(arg))
        fed = f"{name}_content" if content is None else content or None
        quoted = '"' + name.replace('"', '""') + '"'
        found.append(_KeptIndex(name, module,
                                f"CREATE VIRTUAL TABLE {quoted} USING {module}({', '.join(kept)})",
                                m.span(), tuple(f"{name}_{s}" for s in _FTS_SHADOWS[module]), fed))
    return found


def _sql_text(tokens: list[str]) -> str:
    """Tokens as SQL again, with no space around '=' (FTS4 reads `content = ""` as a column)."""
    out = ""
    for token in tokens:
        if out and token not in "=()," and out[-1] not in "=(),":
            out += " "
        out += token
    return out


def _index_terms(data: bytes, index: _KeptIndex) -> list[bytes]:
    """Every word of a kept index: its tables and schema row loaded into a database in memory
    (without its tokenizer, which reading words does not need), read through fts5vocab or
    fts4aux. apsw.Error when they cannot be read."""
    import apsw

    conn = apsw.Connection(":memory:")
    try:
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 0)  # (writable_schema, as a restore does)
        script = ["BEGIN;"]
        for table in index.shadows:
            names = [n.replace(q, q + q).encode("utf-8") for n, q in ((table, "'"), (table, '"'))]
            create = re.search(rb"^CREATE TABLE (?:'%s'|\"%s\")\(.*$" % (
                re.escape(names[0]), re.escape(names[1])), data, re.MULTILINE)
            if create is None:
                continue  # (an FTS5 index with columnsize=0 has no docsize table)
            script.append(create.group().decode("utf-8", "replace"))
            script.extend(row.decode("utf-8", "replace") for row in re.findall(
                rb'^INSERT INTO "%s"\(.*$' % re.escape(names[1]), data, re.MULTILINE))
        script += ["PRAGMA writable_schema=ON;",
                   'INSERT INTO "sqlite_schema"("type","name","tbl_name","rootpage","sql") '
                   "VALUES('table',?1,?1,0,?2);",
                   "PRAGMA writable_schema=RESET;", "COMMIT;"]
        conn.execute("\n".join(script), (index.name, index.sql))
        # (fts4aux takes the schema's name bare: quoted, its reads fail)
        name = '"' + index.name.replace('"', '""') + '"'
        if index.module == "fts5":
            conn.execute(f"CREATE VIRTUAL TABLE temp.vault_words USING fts5vocab(main, {name}, row)")
            query = "SELECT CAST(term AS BLOB) FROM temp.vault_words"
        else:
            conn.execute(f"CREATE VIRTUAL TABLE temp.vault_words USING fts4aux(main, {name})")
            query = "SELECT DISTINCT CAST(term AS BLOB) FROM temp.vault_words"
        return [bytes(row[0]) for row in conn.execute(query) if row[0]]
    finally:
        conn.close()


def _index_findings(data: bytes, index: _KeptIndex, rules: _Rules) -> list[_Located]:
    """The secrets among a kept index's words: by every pattern as they are, by the patterns
    of prefixed keys in any case (most tokenizers lower-case words), and by randomness (a
    tokenizer splits `ghp_...` at its underscore). An index cannot take a marker: each finding
    holds the file back under redact too."""
    import apsw

    locator = f"full-text index {index.name}"
    start, end = index.line
    try:
        terms = _index_terms(data, index)
    except apsw.Error:
        # Its words cannot be read here, so nothing can say they hold no secret: held back
        # until the index is readable, or its fingerprint is allowed.
        return [_Located(_Hit(start, end, "unreadable full-text index", 1), locator,
                         f"full-text index {index.name}".encode(), "ascii", False,
                         "its words could not be read to check them for secrets")]
    if not terms:
        return []
    buffer = b"\n".join(terms)
    hits = _merge(_scan(buffer, rules, text=False) + _scan(buffer, _term_rules(), text=False))
    firsts = list(accumulate((len(t) + 1 for t in terms[:-1]), initial=0))
    covered = {bisect_right(firsts, at) - 1 for h in hits for at in (h.start, h.end - 1)}
    found = [_Located(_Hit(start, end, h.kind, h.priority), locator, buffer[h.start:h.end],
                      "ascii", False, _INDEX_NOTE) for h in hits]
    found += [_Located(_Hit(start, end, "high-entropy secret", 1), locator, term, "ascii",
                       False, _INDEX_NOTE)
              for i, term in enumerate(terms) if i not in covered and _random_term(term)]
    return found


def _term_rules() -> _Rules:
    """The token patterns in any case: a key's prefix survives a tokenizer lower-cased."""
    if not _TERM_CACHE:
        _TERM_CACHE.append(_Rules(tuple(
            rule if rule.lowered else _Rule(
                rule.kind, re.compile(rule.pattern.pattern, rule.pattern.flags | re.IGNORECASE),
                rule.group, rule.priority, rule.lowered, rule.needles, rule.weak, rule.extend,
                rule.fix, rule.check)
            for rule in _rules().tokens), ()))
    return _TERM_CACHE[0]


def _random_term(term: bytes) -> bool:
    """A word of an index that is a key's random body (lower-cased, maybe): random by the test
    for token fields, and neither a hash nor an id in hex, which memory is full of."""
    text = term.decode("utf-8", "replace")
    if not _looks_random(text):
        return False
    bare = re.sub(r"[^0-9A-Za-z]", "", text)
    return re.fullmatch(r"(?:0[xX])?[0-9a-fA-F]+", bare) is None


# --- lines, fingerprints, allowlists --------------------------------------------------------


def _normal(secret: bytes, kind: str) -> str:
    """The secret as its owner would type it, so one secret has one fingerprint in any file."""
    text = secret.decode("utf-8", "replace")
    if "\\" in text:
        try:
            text = json.loads(f'"{text}"')  # \n and \" inside a JSON string
        except ValueError:
            pass
    if kind == "private key":
        text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return text


class _Allowed:
    """Membership in an allowlist of fingerprints, where a short entry is a prefix.

    An entry matches a secret's fingerprint under this install's salt or under the constant
    salt of older versions: allow lists (secrets-allow.json, [secrets] allow_fingerprints)
    written before the salt was per install keep working, and so does allowing a fingerprint
    read from a marker committed then. The entries cannot be migrated (a fingerprint does not
    give back its secret); the old salt adds nothing an attacker lacks: it was public.
    """

    def __init__(self, entries: frozenset[str]) -> None:
        self.exact = frozenset(e[:FINGERPRINT_LEN] for e in entries if len(e) >= FINGERPRINT_LEN)
        self.prefixes = tuple(e for e in entries if len(e) < FINGERPRINT_LEN)

    def _has(self, fp: str) -> bool:
        return fp in self.exact or (bool(self.prefixes) and fp.startswith(self.prefixes))

    def __call__(self, fp: str, value: str) -> bool:
        if not self.exact and not self.prefixes:
            return False
        return self._has(fp) or self._has(legacy_fingerprint(value))


_MATCHERS: dict[tuple[str, ...], Callable[[str], bool]] = {}


def _matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    matcher = _MATCHERS.get(patterns)
    if matcher is None:
        from vault.sources import compile_patterns

        matcher = _MATCHERS[patterns] = compile_patterns(patterns)
    return matcher


def _read_allow_file(config: Config) -> list[str]:
    """Fingerprints recorded by `vault secrets allow` (none when the file does not exist)."""
    path = config.state_dir / ALLOW_FILE
    hint = "fix or delete the file; `vault secrets allow` writes it"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise VaultError(f"cannot read {path}: {exc}", hint=hint) from None
    values = document.get("fingerprints") if isinstance(document, dict) else None
    if not isinstance(values, list) or not all(
            isinstance(v, str) and re.fullmatch(_HEX_FP, v) for v in values):
        raise VaultError(f'{path}: expected {{"fingerprints": [hex, ...]}}', hint=hint)
    return [v.lower() for v in values]
