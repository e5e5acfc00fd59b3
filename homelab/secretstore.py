"""The lab's secrets: one age file per secret, encrypted to the hosts and admins who may read it.

Where things live (paths relative to the lab's folder):

* ``secrets/<name>.age``: the value, age-encrypted (binary age v1, the format agenix reads) to its readers;
* ``secrets/secrets.toml``: who each secret is for (``hosts``, ``cluster``) and who it was last encrypted
  to (``readers``), written by homelab and readable by anyone; ``secrets/secrets.nix``: the same readers as
  agenix's own CLI reads them;
* ``hosts/<host>/ssh_host_ed25519_key.pub``: the host's SSH host key, the host's age recipient. On the
  host, agenix decrypts its secrets at activation with ``/etc/ssh/ssh_host_ed25519_key``;
* ``secrets/host-keys/<host>.age``: a host key made by homelab (``homelab secrets hostkey``) before the
  machine is installed: its private half, encrypted to the admins only (``homelab install`` hands it to the
  new machine).

Readers: every admin key of ``Cluster.admin_keys`` that age can encrypt to (``ssh-ed25519``, ``ssh-rsa``;
homelab's placeholder key is nobody's and is left out), plus the host key of each host the secret is for.
A ``--cluster`` secret is for the Kubernetes cluster: only the admins read it, and ``homelab deploy`` turns
it into a Kubernetes Secret from the admin's machine.

Every value goes through pipes only: the plaintext is written to ``age``'s standard input and read from
its standard output, never put in an argument, an environment variable or a file (``edit`` aside, whose
file is private to the user, 0600 in a 0700 folder on a RAM file system where there is one, and removed on
every way out).  Who a file can be read by is read from the file itself: each ``ssh-ed25519`` and
``ssh-rsa`` stanza of an age header names its recipient by the first four bytes of the SHA-256 of the
recipient's SSH public key (age's ``agessh`` package; see docs/nixpkgs-facts.md, "age and agenix").
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import attrs

from .errors import MissingTool, Problem, UsageError
from .fields import ssh_key_blob
from .model import PLACEHOLDER_KEY, SECRET_NAME, SECRET_RUNTIME_DIR, Lab
from .secretuse import cluster_needed, host_secrets, needed, secrets_of  # noqa: F401 - part of this API

SECRETS_DIR = "secrets"
RECORD = "secrets/secrets.toml"
AGENIX_RULES = "secrets/secrets.nix"  # the same readers, as agenix's own CLI reads them (agenix -e, agenix -r)
HOST_KEYS_DIR = "secrets/host-keys"
RUNTIME_DIR = SECRET_RUNTIME_DIR  # agenix's age.secretsDir default: a secret's runtime path is RUNTIME_DIR/<name>
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"  # the identity agenix decrypts with on the host
AGE_TYPES = ("ssh-ed25519", "ssh-rsa")  # the SSH key types age encrypts to
AGE_MAGIC = b"age-encryption.org/v1\n"
ARMOR_BEGIN, ARMOR_END = b"-----BEGIN AGE ENCRYPTED FILE-----", b"-----END AGE ENCRYPTED FILE-----"
ENCRYPT_SECONDS = 60  # how long age may take to encrypt (nothing to wait for)
KEYGEN_SECONDS = 60  # how long ssh-keygen may take to make a host key (nothing to wait for either)
DECRYPT_SECONDS = 300  # ... to decrypt (it may ask for the passphrase of the admin's key)


class SecretsError(UsageError):
    """A secrets command cannot do what was asked (bad input, exit 2); nothing was written."""


class AgeMissing(MissingTool):
    """The ``age`` program (or ssh-keygen) is not installed (exit 4)."""


def age_file(name: str) -> str:
    return f"{SECRETS_DIR}/{name}.age"


def host_key_pub(host: str) -> str:
    return f"hosts/{host}/ssh_host_ed25519_key.pub"


def host_key_age(host: str) -> str:
    return f"{HOST_KEYS_DIR}/{host}.age"


def runtime_path(name: str) -> str:
    """Where agenix puts the decrypted secret on the host (``config.age.secrets.<name>.path``)."""
    return f"{RUNTIME_DIR}/{name}"


# ---------------------------------------------------------------- keys and readers


def key_tag(public_key: str) -> str:
    """age's recipient tag of an SSH public key: base64 (unpadded) of SHA-256(the key's wire bytes)[:4]."""
    blob = base64.b64decode(public_key.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()[:4]).decode().rstrip("=")


def fingerprint(public_key: str) -> str:
    """``SHA256:...`` as ssh-keygen -l prints it."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@attrs.frozen
class Reader:
    """Who can read a secret: an admin (by their key's comment) or a host, with the key age encrypts to."""

    kind: str  # admin | host
    name: str
    key: str  # "ssh-ed25519 AAAA..." (no comment)

    @property
    def tag(self) -> str:
        return key_tag(self.key)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def _bare(key: str) -> str:
    return " ".join(key.split()[:2])


def admin_readers(lab: Lab) -> list[Reader]:
    """The admins' keys age can encrypt to; the placeholder and other key types are left out.  Each is checked
    whole (the model checks it too, where ``Cluster.admin_keys`` is defined) before it becomes a reader."""
    out = []
    for i, k in enumerate(lab.cluster.admin_keys):
        parts = k.split()
        if k == PLACEHOLDER_KEY or parts[0] not in AGE_TYPES:
            continue
        if ssh_key_blob(k) is None:
            raise SecretsError(f"cluster: admin_keys[{i}]: {_bare(k)!r} is not a whole {parts[0]} key (its base64 "
                               "does not decode to one; a line cut short or mistyped?), so age cannot encrypt to it; "
                               "copy the whole line of the admin's public key again (e.g. ~/.ssh/id_ed25519.pub)")
        out.append(Reader("admin", parts[2] if len(parts) > 2 else f"admin_keys[{i}]", _bare(k)))
    return out


def read_host_key(root: Path, host: str) -> str | None:
    """The host's public host key from the lab, or None when the lab has none."""
    p = root / host_key_pub(host)
    try:
        text = p.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise SecretsError(f"{host_key_pub(host)}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    parts = text.split()
    if len(parts) < 2 or parts[0] not in AGE_TYPES:
        raise SecretsError(f"{host_key_pub(host)}: not an ssh-ed25519 or ssh-rsa public key (age encrypts to those "
                           "only); copy the machine's /etc/ssh/ssh_host_ed25519_key.pub")
    if ssh_key_blob(text) is None:  # one strict decode: not base64, cut short, another type's key
        raise SecretsError(f"{host_key_pub(host)}: not a whole {parts[0]} key (its base64 does not decode to one; "
                           "a line cut short or mistyped?); copy the machine's /etc/ssh/ssh_host_ed25519_key.pub")
    return _bare(text)


def host_reader(root: Path, host: str) -> Reader:
    key = read_host_key(root, host)
    if key is None:
        raise SecretsError(f"hosts/{host}: {Path(host_key_pub(host)).name}: missing, so {host} cannot be a reader; "
                           f"make one with `homelab secrets hostkey hosts/{host}` (before installing the machine) or "
                           f"copy the running machine's: ssh-keyscan -t ed25519 <address> | cut -d' ' -f2- > "
                           f"{host_key_pub(host)}")
    return Reader("host", host, key)


def readers_for(root: Path, lab: Lab, hosts: Iterable[str]) -> list[Reader]:
    admins = admin_readers(lab)
    if not admins:
        raise SecretsError("cluster: admin_keys: no key age can encrypt to (an ssh-ed25519 or ssh-rsa key of "
                           "yours; the placeholder is nobody's), so no admin could read, edit or rekey a secret")
    return admins + [host_reader(root, h) for h in sorted(set(hosts))]


# ---------------------------------------------------------------- the record: who each secret is for


@attrs.frozen
class Entry:
    name: str
    hosts: tuple[str, ...] = ()
    cluster: bool = False
    readers: tuple[str, ...] = ()  # "admin you@laptop SHA256:..." / "host yomogi SHA256:...", as last encrypted


def _validate_name(name: str) -> None:
    if not isinstance(name, str) or not SECRET_NAME.match(name):
        raise SecretsError(f"{name!r} is not a secret name (lower-case letters, digits, '.', '_' and '-'; up to 63)")


RECORD_KEYS = frozenset({"hosts", "cluster", "readers"})  # a secret's table in the record, all of it


def read_record(root: Path) -> dict[str, Entry]:
    p = root / RECORD
    if not p.exists():
        return {}
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SecretsError(f"{RECORD}: cannot be read: {e}") from None
    out = {}
    for name, v in data.items():
        if not isinstance(v, dict) or not SECRET_NAME.match(name):
            raise SecretsError(f"{RECORD}: [{name}]: not a secret's table")
        unknown = sorted(set(v) - RECORD_KEYS)
        if unknown:  # a typo (host = [...]) would leave the secret for nobody, silently
            known = ", ".join(sorted(RECORD_KEYS))
            raise SecretsError(f"{RECORD}: [{name}]: unknown key{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(map(repr, unknown))} (a secret's table has: {known})")
        hosts, cluster, readers = v.get("hosts", []), v.get("cluster", False), v.get("readers", [])
        if not (isinstance(hosts, list) and all(isinstance(h, str) for h in hosts) and isinstance(cluster, bool)
                and isinstance(readers, list) and all(isinstance(r, str) for r in readers)):
            raise SecretsError(f"{RECORD}: [{name}]: hosts must be a list of host names, cluster true or false")
        out[name] = Entry(name, tuple(sorted(hosts)), cluster, tuple(readers))
    return out


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_record(entries: dict[str, Entry]) -> str:
    out = ["# The lab's secrets: who each one is for, and who it was last encrypted to (its age file's readers).",
           "# Written by `homelab secrets`; the values are in secrets/<name>.age, never here.",
           "# hosts: the hosts that decrypt it at activation (agenix, to /run/agenix/<name>);",
           "# cluster: the admins put it into Kubernetes (homelab deploy); the admins can read every secret."]
    for name in sorted(entries):
        e = entries[name]
        out += ["", f"[{_toml_str(name)}]", f"hosts = [{', '.join(_toml_str(h) for h in e.hosts)}]",
                f"cluster = {'true' if e.cluster else 'false'}", "readers = ["]
        out += [f"  {_toml_str(r)}," for r in e.readers]
        out.append("]")
    return "\n".join(out) + "\n"


def _nix_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def render_agenix_rules(root: Path, lab: Lab, entries: dict[str, Entry]) -> str:
    """``secrets/secrets.nix``: each secret's readers as agenix's CLI wants them (``"<name>.age".publicKeys``).

    Written beside the record so ``cd secrets && agenix -e <name>.age`` works too; the keys are the lab's
    current ones (a host without a key in the lab is left out and reported by the build).
    """
    out = ["# Generated by `homelab secrets` from secrets.toml and the lab's keys; do not edit by hand.",
           "# The rules agenix's own command reads (cd secrets && agenix -e <name>.age): the same readers homelab",
           "# encrypts to, the admins' keys and each host's ssh_host_ed25519_key.pub.", "{"]
    admins = admin_readers(lab)
    for name in sorted(entries):
        readers = list(admins)
        for h in entries[name].hosts:
            key = None
            with _quiet_secrets():
                key = read_host_key(root, h)
            if key:
                readers.append(Reader("host", h, key))
        out.append(f"  {_nix_str(name + '.age')}.publicKeys = [")
        out += [f"    {_nix_str(r.key)} # {r}" for r in readers]
        out.append("  ];")
    return "\n".join(out + ["}"]) + "\n"


def _write_record(root: Path, lab: Lab, record: dict[str, Entry]) -> None:
    write_atomic(root / RECORD, render_record(record).encode())
    write_atomic(root / AGENIX_RULES, render_agenix_rules(root, lab, record).encode())


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


# ---------------------------------------------------------------- age, through pipes


def age_binary() -> str:
    age = shutil.which("age")
    if age is None:
        raise AgeMissing("age is not on PATH (Debian: apt-get install age; nix: nix shell nixpkgs#age)")
    return age


def encrypt(value: bytes, readers: Sequence[Reader]) -> bytes:
    """The age file of ``value`` for ``readers``: the plaintext goes to age's stdin, the file comes from its stdout."""
    argv = [age_binary(), "--encrypt"]
    for r in readers:
        argv += ["--recipient", r.key]  # public keys: nothing secret in the arguments
    try:
        p = subprocess.run(argv, input=value, capture_output=True, timeout=ENCRYPT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SecretsError(f"age could not encrypt: it did not finish within {ENCRYPT_SECONDS} s") from None
    if p.returncode != 0 or not p.stdout.startswith(AGE_MAGIC):
        raise SecretsError(f"age could not encrypt (exit {p.returncode}): {p.stderr.decode(errors='replace').strip()}")
    return p.stdout


def default_identities() -> list[str]:
    """The admin's private keys age tries: $HOMELAB_AGE_IDENTITY (paths, ':'-separated), else ~/.ssh's own."""
    env = os.environ.get("HOMELAB_AGE_IDENTITY")
    if env:
        return [p for p in env.split(":") if p]
    home = Path.home() / ".ssh"
    return [str(home / n) for n in ("id_ed25519", "id_rsa") if (home / n).is_file()]


def _identities(identity: str | Sequence[str] | None) -> list[str]:
    ids = [identity] if isinstance(identity, (str, os.PathLike)) else list(identity or default_identities())
    ids = [str(i) for i in ids]
    if not ids:
        raise SecretsError("no private key to decrypt with: pass --identity FILE (or set HOMELAB_AGE_IDENTITY), "
                           "the private half of one of Cluster.admin_keys (~/.ssh/id_ed25519 is tried by default)")
    for i in ids:
        if not os.path.isfile(i):
            raise SecretsError(f"--identity {i}: no such file")
    return ids


def decrypt(data: bytes, identity: str | Sequence[str] | None = None, *, what: str = "the secret") -> bytes:
    """The plaintext of an age file, into memory: the file goes to age's stdin, the value comes from its stdout."""
    ids = _identities(identity)
    argv = [age_binary(), "--decrypt"]
    for i in ids:
        argv += ["--identity", i]
    try:
        p = subprocess.run(argv, input=data, capture_output=True, timeout=DECRYPT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SecretsError(f"{what}: age could not decrypt it: no answer within {DECRYPT_SECONDS} s (a passphrase "
                           "not typed?)") from None
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip()
        if "no identity matched" in err:
            raise SecretsError(f"{what}: none of your keys ({', '.join(ids)}) is among its readers; an admin who "
                               "can read it runs `homelab secrets rekey`, or pass --identity")
        raise SecretsError(f"{what}: age could not decrypt it (exit {p.returncode}): {err}")
    return p.stdout


def recipient_tags(data: bytes) -> tuple[str, ...]:
    """The recipient tags an age file's header names (its ssh-ed25519 and ssh-rsa stanzas), in order.

    Binary or armored (``age --armor``, which agenix also reads).
    """
    if data.lstrip().startswith(ARMOR_BEGIN):
        body = data.strip()[len(ARMOR_BEGIN):]
        if not body.endswith(ARMOR_END):
            raise SecretsError("an armored age file without its end line")
        try:
            data = base64.b64decode(b"".join(body[:-len(ARMOR_END)].split()), validate=True)
        except ValueError:
            raise SecretsError("an armored age file whose body is not base64") from None
    if not data.startswith(AGE_MAGIC):
        raise SecretsError("not an age v1 file")
    tags = []
    for line in data[len(AGE_MAGIC):].split(b"\n"):
        if line.startswith(b"--- "):
            break
        if line.startswith(b"-> "):
            args = line[3:].decode("ascii", errors="replace").split(" ")
            if args[0] in AGE_TYPES and len(args) > 1:
                tags.append(args[1])
    else:
        raise SecretsError("the age header has no end")
    return tuple(tags)


# ---------------------------------------------------------------- what the lab needs


def lab_problems(root: Path, lab: Lab) -> list[Problem]:
    """A secret a host needs but cannot read: no age file, no host key in the lab, or not among its readers
    (errors: the flake needs the file); a secret only the cluster's settings name that is not set (a warning:
    only ``homelab deploy``, which creates the Kubernetes Secret, needs it, and refuses to start without it:
    :func:`cluster_missing`)."""
    out = []
    wanted = needed(lab)  # once: it looks at every role of every host (0.05 s at 10,000 hosts)
    host_names = {n for names in wanted.values() for n in names}
    for name, field in cluster_missing(root, lab).items():
        if name not in host_names:  # a host that needs it has its own error below
            out.append(Problem("cluster", field, f"secret {name!r} is not set ({age_file(name)} is missing): "
                               "`homelab deploy` creates the Kubernetes Secret from it and refuses to run without "
                               f"it; set it: homelab secrets set {name} --cluster < file-holding-the-value",
                               "warning"))
    for host, names in wanted.items():
        where = f"hosts/{host}"
        try:
            key = read_host_key(root, host)
        except SecretsError as e:
            out.append(Problem(where, "ssh_host_ed25519_key.pub", str(e).split(": ", 1)[1]))
            continue
        for name, field in names.items():
            fix_set = f"printf %s \"$VALUE\" | homelab secrets set {name} --host {host}"
            if key is None:
                out.append(Problem(where, field, f"{host} decrypts secret {name!r} with its SSH host key, and the lab "
                                   f"has none ({host_key_pub(host)}); make it with `homelab secrets hostkey "
                                   f"hosts/{host}` (a new machine) or copy the machine's (ssh-keyscan -t ed25519), "
                                   f"then `homelab secrets rekey`"))
                continue
            p = root / age_file(name)
            if not p.is_file():
                out.append(Problem(where, field, f"secret {name!r} is not set ({age_file(name)} is missing); set it: "
                                   f"{fix_set}"))
                continue
            try:
                tags = recipient_tags(p.read_bytes())
            except (OSError, SecretsError) as e:
                out.append(Problem(where, field, f"{age_file(name)}: {e}"))
                continue
            if key_tag(key) not in tags:
                out.append(Problem(where, field, f"{host} cannot read secret {name!r}: {age_file(name)} is not "
                                   f"encrypted to its host key ({host_key_pub(host)}); add it: "
                                   f"homelab secrets set {name} --host {host} (keeps the other readers), or "
                                   "`homelab secrets rekey` after a host key changed"))
    return out


def cluster_missing(root: Path, lab: Lab) -> dict[str, str]:
    """{secret name: field} for the secrets the cluster's settings name whose age file is missing."""
    return {name: field for name, field in cluster_needed(lab).items() if not (root / age_file(name)).is_file()}


def cluster_missing_errors(root: Path, lab: Lab) -> list[str]:
    """Why ``homelab deploy`` cannot create the releases' Secrets: each cluster secret not set, with the fix."""
    return [f"cluster: {field}: secret {name!r} is not set ({age_file(name)} is missing), and the cluster layer "
            f"creates a Kubernetes Secret from it; set it first: homelab secrets set {name} --cluster "
            "< file-holding-the-value" for name, field in cluster_missing(root, lab).items()]


# ---------------------------------------------------------------- the operations


@attrs.frozen
class Status:
    name: str
    hosts: tuple[str, ...]
    cluster: bool
    readers: tuple[str, ...]  # who can read the file as it is (matched to the lab's keys)
    unknown: int  # recipients of the file that are none of the lab's keys now (an old key)
    missing: tuple[str, ...]  # who should read it and cannot: rekey
    size: int  # bytes of the age file (what anyone with the repository learns, with the names)
    needed_by: tuple[str, ...]  # hosts whose roles ask for it


def _labels(readers: Sequence[Reader]) -> tuple[str, ...]:
    return tuple(f"{r} {fingerprint(r.key)}" for r in readers)


def _entry(root: Path, name: str) -> Entry:
    _validate_name(name)
    record = read_record(root)
    if name not in record or not (root / age_file(name)).is_file():
        known = ", ".join(sorted(record)) or "none yet"
        raise SecretsError(f"secret {name!r}: not in the lab (secrets: {known}); set it with "
                           f"`homelab secrets set {name} --host HOST` (the value on standard input)")
    return record[name]


def _check_hosts(lab: Lab, hosts: Iterable[str]) -> None:
    known = {h.hostname for h in lab.hosts}
    for h in hosts:
        if h not in known:
            raise SecretsError(f"--host {h}: not a host of this lab (hosts: {', '.join(sorted(known))})")


def set_secret(root: Path, lab: Lab, name: str, value: bytes, *, hosts: Sequence[str] = (), cluster: bool = False,
               add: bool = True) -> Entry:
    """Encrypt ``value`` as secret ``name`` to the admins and ``hosts``; the record says who it is for.

    ``add``: the hosts (and the cluster flag) it was already for stay among its readers.
    """
    _validate_name(name)
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError("the value is bytes")
    if not value:
        raise SecretsError(f"secret {name!r}: the value is empty (give it on standard input)")
    _check_hosts(lab, hosts)
    record = read_record(root)
    old = record.get(name)
    all_hosts = tuple(sorted(set(hosts) | (set(old.hosts) if old and add else set())))
    is_cluster = cluster or bool(old and add and old.cluster)
    if not all_hosts and not is_cluster:
        raise SecretsError(f"secret {name!r}: say who it is for: --host HOST (a host decrypts it at activation), "
                           "--cluster (the admins put it into Kubernetes), or both")
    readers = readers_for(root, lab, all_hosts)
    data = encrypt(bytes(value), readers)
    entry = Entry(name, all_hosts, is_cluster, _labels(readers))
    write_atomic(root / age_file(name), data)
    record[name] = entry
    _write_record(root, lab, record)
    return entry


def reveal(lab_root: str | Path, name: str, identity: str | Sequence[str] | None = None) -> bytes:
    """The value of secret ``name``, decrypted into memory with the admin's key (never written anywhere).

    ``identity``: a private key file (or several); by default $HOMELAB_AGE_IDENTITY, else ~/.ssh/id_ed25519 and
    ~/.ssh/id_rsa.  Raises SecretsError (unknown secret, not a reader) or AgeMissing (no ``age``).
    """
    root = Path(lab_root)
    _entry(root, name)
    return decrypt((root / age_file(name)).read_bytes(), identity, what=age_file(name))


def private_dir() -> str:
    """A new 0700 folder for a plaintext, on a RAM file system when there is one (it never reaches a disk)."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="homelab-secret-", dir=base)


def remove_private(path: str) -> None:
    """Overwrite every file in the folder with zeros, then remove it.

    A symbolic link is removed, never followed: the file it points to is not the folder's (an editor's backup
    link, or anything linked in), and it keeps every byte; a file the link points to inside the folder is
    zeroed under its own name.  Nothing is opened but regular files (a FIFO would block)."""
    for dirpath, _, names in os.walk(path):
        for n in names:
            p = os.path.join(dirpath, n)
            with _quiet():  # a link (O_NOFOLLOW: ELOOP), a file gone meanwhile: nothing to zero
                fd = os.open(p, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "wb") as f:
                    info = os.fstat(fd)
                    if stat.S_ISREG(info.st_mode):
                        f.write(b"\0" * info.st_size)
                        f.flush()
                        os.fsync(fd)
    shutil.rmtree(path, ignore_errors=True)


def editor_argv(path: str) -> list[str]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    return [*shlex.split(editor), path]


def edit(root: Path, lab: Lab, name: str, *, identity: str | Sequence[str] | None = None,
         run_editor: Callable[[list[str]], int] | None = None) -> bool:
    """$EDITOR on the value of ``name`` (a new one when it is not set yet is refused: use set), re-encrypted.

    The plaintext lives only in a 0600 file inside a private 0700 folder, removed on every way out.
    True when the value changed (and was encrypted again to the same readers).
    """
    entry = _entry(root, name)
    value = decrypt((root / age_file(name)).read_bytes(), identity, what=age_file(name))
    work = private_dir()
    try:
        path = os.path.join(work, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        argv = editor_argv(path)
        rc = (run_editor or (lambda a: subprocess.run(a).returncode))(argv)
        if rc != 0:
            raise SecretsError(f"the editor ({argv[0]}) exited with {rc}; {age_file(name)} is unchanged")
        try:
            with open(path, "rb") as f:
                new = f.read()
        except FileNotFoundError:
            raise SecretsError(f"the editor ({argv[0]}) removed the file it was given, so there is no new value; "
                               f"{age_file(name)} is unchanged") from None
        except OSError as e:  # a folder or a link loop where the file was: the editor's doing, not a crash
            raise SecretsError(f"the edited value cannot be read back ({e.strerror}); {age_file(name)} is "
                               "unchanged") from None
    finally:
        remove_private(work)
    if new == value:
        return False
    set_secret(root, lab, name, new, hosts=entry.hosts, cluster=entry.cluster)
    return True


@attrs.frozen
class Rekeyed:
    name: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


def rekey(root: Path, lab: Lab, *, identity: str | Sequence[str] | None = None,
          names: Sequence[str] | None = None) -> list[Rekeyed]:
    """Encrypt every secret (or ``names``) again to its readers as the lab's keys are now; the values stay.

    Every reader is worked out, every value decrypted into memory with the admin's key and encrypted again
    before anything is written: a secret the admin cannot read, or a reader without a key, stops the rekey
    with nothing changed.
    """
    record = read_record(root)
    todo = sorted(set(names)) if names else sorted(record)  # a name given twice is rekeyed once
    if not todo:
        return []
    known = {h.hostname for h in lab.hosts}
    readers = {}
    for n in todo:
        e = _entry(root, n)
        gone = sorted(set(e.hosts) - known)
        if gone:
            raise SecretsError(f"secret {n!r} is for {', '.join(gone)}, no longer a host of this lab; say who it is "
                               f"for now with its value: homelab secrets set {n} --only --host ... (or remove it from "
                               f"{RECORD} and {age_file(n)})")
        readers[n] = readers_for(root, lab, e.hosts)
    files = {n: encrypt(decrypt((root / age_file(n)).read_bytes(), identity, what=age_file(n)), readers[n])
             for n in todo}
    out = []
    for n in todo:
        e, labels = record[n], _labels(readers[n])
        write_atomic(root / age_file(n), files[n])
        record[n] = attrs.evolve(e, readers=labels)
        out.append(Rekeyed(n, tuple(x for x in labels if x not in e.readers),
                           tuple(x for x in e.readers if x not in labels)))
    _write_record(root, lab, record)
    return out


def status(root: Path, lab: Lab) -> list[Status]:
    """Who can read what: each secret's readers as its age file names them, and who should and cannot."""
    record = read_record(root)
    need = needed(lab)
    out = []
    for name in sorted(set(record) | {n for names in need.values() for n in names}):
        e = record.get(name, Entry(name))
        p = root / age_file(name)
        data = p.read_bytes() if p.is_file() else b""
        tags = recipient_tags(data) if data else ()
        known: dict[str, Reader] = {r.tag: r for r in admin_readers(lab)}
        for h in lab.hosts:
            with _quiet_secrets():
                key = read_host_key(root, h.hostname)
                if key:
                    known.setdefault(key_tag(key), Reader("host", h.hostname, key))
        readers = tuple(str(known[t]) for t in tags if t in known)
        should = {str(r) for r in admin_readers(lab)} | {f"host {h}" for h in e.hosts}
        should |= {f"host {h}" for h, names in need.items() if name in names}
        missing = tuple(sorted(should - set(readers)))
        out.append(Status(name, e.hosts, e.cluster, readers, sum(t not in known for t in tags), missing, len(data),
                          tuple(sorted(h for h, names in need.items() if name in names))))
    return out


class _quiet_secrets:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], SecretsError)


# ---------------------------------------------------------------- host keys made before the install


def make_host_key(root: Path, lab: Lab, host: str, *, force: bool = False) -> str:
    """A new SSH host key for ``host``: public half into the lab, private half encrypted to the admins.

    Returns the public key.  Refuses to replace a host key the lab has unless ``force`` (the running machine
    would no longer read its secrets until it gets the new key and they are rekeyed).
    """
    _check_hosts(lab, [host])
    pub = root / host_key_pub(host)
    if pub.exists() and not force:
        raise SecretsError(f"hosts/{host}: {pub.name} exists already; a new key means the machine must get it too "
                           "(homelab install) and every secret it reads rekeyed: pass --force to replace it")
    admins = readers_for(root, lab, [])
    if shutil.which("ssh-keygen") is None:
        raise AgeMissing("ssh-keygen is not on PATH (Debian: openssh-client)")
    work = private_dir()
    try:
        key = os.path.join(work, "ssh_host_ed25519_key")
        try:
            r = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host}", "-f", key],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=KEYGEN_SECONDS)
        except subprocess.TimeoutExpired:
            raise SecretsError(f"hosts/{host}: ssh-keygen did not make the host key within {KEYGEN_SECONDS:g} s; "
                               "nothing was written") from None
        if r.returncode != 0:
            raise SecretsError(f"ssh-keygen failed (exit {r.returncode}): {r.stderr.strip()}")
        with open(key, "rb") as f:
            private = f.read()
        with open(key + ".pub", encoding="utf-8") as f:
            public = f.read().strip()
    finally:
        remove_private(work)
    write_atomic(root / host_key_age(host), encrypt(private, admins))
    write_atomic(pub, (public + "\n").encode())
    return public


def reveal_host_key(lab_root: str | Path, host: str, identity: str | Sequence[str] | None = None) -> bytes:
    """The private host key homelab made for ``host``, decrypted into memory (for ``homelab install``)."""
    p = Path(lab_root) / host_key_age(host)
    if not p.is_file():
        raise SecretsError(f"hosts/{host}: no host key made by homelab ({host_key_age(host)}); make one with "
                           f"`homelab secrets hostkey hosts/{host}`")
    return decrypt(p.read_bytes(), identity, what=host_key_age(host))


__all__ = ["SecretsError", "AgeMissing", "Reader", "Entry", "Status", "Rekeyed", "set_secret", "reveal", "edit",
           "rekey", "status", "needed", "host_secrets", "lab_problems", "cluster_missing", "cluster_missing_errors",
           "make_host_key", "reveal_host_key",
           "recipient_tags", "key_tag", "age_file", "host_key_pub", "runtime_path", "RUNTIME_DIR"]
