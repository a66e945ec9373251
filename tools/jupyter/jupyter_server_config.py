# daas's settings for the Jupyter server of a notebook session. daas points
# JUPYTER_CONFIG_PATH at this folder (local runtime: `{tools}/jupyter`; Kubernetes: the
# session's Secret, mounted), so it applies whatever command the image runs.
#
# daas's proxy adds `Authorization: token <secret>` to every request it forwards, and the
# browser must never learn that secret. Jupyter writes the token it is configured with into
# every page it renders (JupyterLab's page_config, `data-jupyter-api-token` of
# jupyter_server's pages), so the server is given no token at all: the secret is checked
# here, from the header only, and pages get an empty token (as under JupyterHub), with which
# JupyterLab relies on the proxy's header. The proxy then never has to change a body.
#
# Nor does the server hold the secret: kernels inherit its environment, and in a shared
# session every member's code runs in them. It reads only the secret's SHA-256, from the
# file named by DAAS_TOKEN_HASH_FILE (lowercase hex, one line), at each request, so that
# daas can rotate the secret by replacing that file (a new file renamed over the old one).
#
# Who is at the keyboard is daas's to say: with the secret come `X-Daas-User` (the
# username) and `X-Daas-Name` (the display name, percent-encoded UTF-8). Real-time
# collaboration (jupyter-collaboration) shows each member by that name.

import hashlib
import hmac
import os
import re
import sys
from urllib.parse import unquote

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.auth.identity import IdentityProvider, User
from traitlets import default

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def read_token_hash(path):
    """The hash in the file at `path`, or None where it cannot be read or is not a hash."""
    try:
        with open(path, encoding="ascii") as f:
            found = f.read(100).strip().lower()
    except (OSError, ValueError):
        return None
    return found if _SHA256_HEX.fullmatch(found) else None


def initials(name):
    """What JupyterLab shows in a collaborator's circle: "Zoë Ångström" gives "ZÅ"."""
    words = name.split()
    if not words:
        return ""
    if len(words) == 1:
        return words[0][0].upper()
    return (words[0][0] + words[-1][0]).upper()


class DaasIdentityProvider(IdentityProvider):
    """Accepts the requests daas forwards (`Authorization: token <secret>`, the secret's hash
    in DAAS_TOKEN_HASH_FILE) as the user daas names in `X-Daas-User`, and no other; renders
    no token into pages."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Without it the server refuses to start (never unguarded); an unreadable file at
        # start is a wrong setting too, as daas writes it before it starts the server.
        self._hash_file = os.environ.get("DAAS_TOKEN_HASH_FILE", "")
        if not self._hash_file:
            sys.exit("daas: DAAS_TOKEN_HASH_FILE is not set: refusing to start without a token")
        if read_token_hash(self._hash_file) is None:
            sys.exit(f"daas: no SHA-256 hex in {self._hash_file} (DAAS_TOKEN_HASH_FILE): refusing to start")

    @default("token")
    def _token_default(self):
        # What pages and the server's info file show: nothing.
        return ""

    async def get_user(self, handler):
        # Only the header counts: no login cookie is read or set, so the secret's rotation
        # ends every old client's access at once, and a page cannot pass for a member.
        user = await self.get_user_token(handler)
        if user is not None:
            # As before: Jupyter's own XSRF and Origin checks are off and daas does them.
            handler._token_authenticated = True
        return user

    async def get_user_token(self, handler):
        headers = handler.request.headers
        found = self.auth_header_pat.match(headers.get("Authorization", ""))
        if not found:
            return None
        # Read at each request (a few bytes): a rotation takes effect at the next one. An
        # unreadable file refuses everything rather than failing the server.
        expected = read_token_hash(self._hash_file)
        if expected is None:
            self.log.warning("daas: cannot read a token hash from %s: request refused", self._hash_file)
            return None
        # Tornado decodes headers as Latin-1: encoding back gives the bytes daas sent.
        presented = hashlib.sha256(found.group(2).strip().encode("latin-1")).hexdigest()
        if not hmac.compare_digest(presented, expected):
            return None
        username = headers.get("X-Daas-User", "").strip()
        if not username:
            # daas's own requests (its readiness probe) name nobody.
            return User(username="daas", name="daas", display_name="daas", initials="D")
        name = unquote(headers.get("X-Daas-Name", ""), errors="replace").strip() or username
        return User(username=username, name=name, display_name=name, initials=initials(name))


c = get_config()  # noqa: F821 (given by traitlets when it loads this file)
c.ServerApp.identity_provider_class = DaasIdentityProvider

# jupyter-collaboration keeps each shared document's edits in an SQLite file, by default
# `.jupyter_ystore.db` in the server's working folder (the user's home, the notebook's root).
# Beside jupyter_server_fileid's file_id_manager.db instead, in Jupyter's data folder in the
# home: out of the user's files, and with the file ids its entries are keyed by. History
# older than a day is squashed at a document's next edit, so the file does not grow forever.
c.SQLiteYStore.db_path = os.path.join(jupyter_data_dir(), "ystore.db")
c.SQLiteYStore.document_ttl = 24 * 3600

# JupyterLab's extension manager would search PyPI from the session; the venv (or image) is
# read-only to it anyway, and only PyPI's listing would be fetched: list what is installed.
c.LabApp.extension_manager = "readonly"
# Nor does JupyterLab fetch its news feed or look for new releases on the internet: a session
# has no network, and a user would be asked about it in every session.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
