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

import hmac
import os

from jupyter_server.auth.identity import IdentityProvider
from traitlets import default


class DaasIdentityProvider(IdentityProvider):
    """Accepts the requests daas forwards (`Authorization: token <JUPYTER_TOKEN>`), and no
    other; renders no token into pages."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Read once at start-up; without it the server refuses to start (never unguarded).
        self._secret = os.environ["JUPYTER_TOKEN"].encode()

    @default("token")
    def _token_default(self):
        # What pages and the server's info file show: nothing.
        return ""

    async def get_user_token(self, handler):
        # `_get_user` marks the request token-authenticated when this returns a user: as
        # before, Jupyter's own XSRF and Origin checks are off and daas does them.
        found = self.auth_header_pat.match(handler.request.headers.get("Authorization", ""))
        if not found or not hmac.compare_digest(found.group(2).encode(), self._secret):
            return None
        # The user id kept in Jupyter's login cookie, so that it stays the same per browser.
        user = self.get_user_cookie(handler)
        if hasattr(user, "__await__"):
            user = await user
        return user or self.generate_anonymous_user(handler)


c = get_config()  # noqa: F821 (given by traitlets when it loads this file)
c.ServerApp.identity_provider_class = DaasIdentityProvider
