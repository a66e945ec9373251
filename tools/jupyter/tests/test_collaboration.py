"""Real-time collaboration (jupyter-collaboration) behind daas's settings: two members of a
session, each with daas's headers, open the same notebook's room as JupyterLab does (a
document session over REST, then the room's WebSocket with the Y sync protocol); what one
types the other sees, and the server saves it to the file."""

import asyncio
import json
import time
import urllib.parse

import pytest
from conftest import TOKEN
from jupyter_ydoc import YNotebook
from pycrdt import Doc
from pycrdt_websocket import WebsocketProvider
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

ZOE = {"X-Daas-User": "zoe", "X-Daas-Name": urllib.parse.quote("Zoë Ångström")}
BOB = {"X-Daas-User": "bob", "X-Daas-Name": urllib.parse.quote("Bob Builder")}
NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {},
               "outputs": [], "source": "x = 1"}],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
}


class Websocket:
    """Tornado's WebSocket client as the Websocket pycrdt_websocket's provider expects."""

    def __init__(self, connection, path):
        self._connection = connection
        self.path = path

    def __aiter__(self):
        return self

    async def __anext__(self):
        message = await self._connection.read_message()
        if message is None:
            raise StopAsyncIteration
        return message

    async def recv(self):
        return await self.__anext__()

    async def send(self, message):
        await self._connection.write_message(message, binary=True)


async def until(check, what, seconds=15):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {seconds} s"
        await asyncio.sleep(0.05)


def test_extension_is_loaded(server):
    (server.root / "alone.ipynb").write_text(json.dumps(NOTEBOOK))
    status, session = server.request("PUT", "/api/collaboration/session/alone.ipynb", TOKEN, ZOE,
                                     {"format": "json", "type": "notebook"})
    # The document session JupyterLab asks for before it opens a room (Jupyter's 404
    # without the extension).
    assert status in (200, 201), session
    assert session["fileId"] and session["sessionId"]
    # Without the secret, nothing.
    assert server.request("PUT", "/api/collaboration/session/alone.ipynb", None, ZOE,
                          {"format": "json", "type": "notebook"})[0] == 403


def test_two_members_edit_one_notebook(server):
    (server.root / "shared.ipynb").write_text(json.dumps(NOTEBOOK))
    status, session = server.request("PUT", "/api/collaboration/session/shared.ipynb", TOKEN, ZOE,
                                     {"format": "json", "type": "notebook"})
    assert status in (200, 201), session
    room = f"json:notebook:{session['fileId']}"
    url = f"{server.ws_url}/api/collaboration/room/{room}?sessionId={session['sessionId']}"

    def connect(headers, token=TOKEN):
        headers = {**headers, **({"Authorization": f"token {token}"} if token else {})}
        return websocket_connect(HTTPRequest(url, headers=headers))

    async def edit():
        # The room's WebSocket is guarded like the rest.
        with pytest.raises(HTTPClientError) as refused:
            await connect(ZOE, token=None)
        assert refused.value.code == 403
        with pytest.raises(HTTPClientError) as refused:
            await connect(ZOE, token="not-the-secret")
        assert refused.value.code == 403

        zoe_doc, bob_doc = Doc(), Doc()
        zoe_ws, bob_ws = await connect(ZOE), await connect(BOB)
        try:
            async with WebsocketProvider(zoe_doc, Websocket(zoe_ws, room)), \
                    WebsocketProvider(bob_doc, Websocket(bob_ws, room)):
                zoe, bob = YNotebook(zoe_doc), YNotebook(bob_doc)
                await until(lambda: zoe.cell_number == 1 and bob.cell_number == 1, "the notebook")
                assert str(bob.ycells[0]["source"]) == "x = 1"
                # (A Text taken out of its cell and added to: `cell["source"] += ...` would
                # set the key anew, emptying it.)
                source = zoe.ycells[0]["source"]
                source += "\nprint('from Zoë')"
                await until(lambda: str(bob.ycells[0]["source"]) == "x = 1\nprint('from Zoë')",
                            "Zoë's edit at Bob's")
                # And back: Bob adds a line Zoë sees.
                source = bob.ycells[0]["source"]
                source += "\ny = 2"
                await until(lambda: str(zoe.ycells[0]["source"]).endswith("\ny = 2"), "Bob's edit at Zoë's")
        finally:
            zoe_ws.close()
            bob_ws.close()

    asyncio.run(edit())

    def saved():
        source = json.loads((server.root / "shared.ipynb").read_text())["cells"][0]["source"]
        return "".join(source) == "x = 1\nprint('from Zoë')\ny = 2"

    deadline = time.monotonic() + 15
    while not saved():
        assert time.monotonic() < deadline, "the edits were not saved to the file"
        time.sleep(0.1)

    # The edits' history is kept in Jupyter's data folder of the home, not among the files.
    assert (server.home / ".local/share/jupyter/ystore.db").is_file()
    assert not (server.root / ".jupyter_ystore.db").exists()
