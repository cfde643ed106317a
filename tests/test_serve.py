"""The live page server over real sockets (aiohttp's client as the page): the token and the
Origin guard everything, the page's audio gives the offline envelopes, frames come back newest
first, quick controls apply, bad input is dropped with one line, a taken port is named."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import aiohttp
import cv2
import numpy as np
import pytest
from test_live import FPS, live_settings, offline_raw, stepped_tones

from audio.live import PushedSource
from audio.load import load_audio
from engine.backends import load_backend
from engine.errors import DriftwaveError
from engine.live import LiveSession
from engine.serve import LiveServer, quick_control
from engine.settings import ModelSettings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served():
    settings = live_settings()
    source = PushedSource(settings.audio.filters, FPS)
    said: list[str] = []
    server = LiveServer(source, port=free_port(), say=said.append)
    server.start()
    yield server, source, said
    server.close()
    source.close()


async def until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_without_the_token_or_from_another_origin_every_request_gets_403(served):
    server, _, _ = served
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as client:
        for url, headers in (
            (f"{base}/", {}),
            (f"{base}/?token=wrong", {}),
            (f"{base}/?token={server.token}", {"Origin": "http://evil.example"}),
            (f"{base}/ws", {}),
        ):
            async with client.get(url, headers=headers) as response:
                assert response.status == 403 and await response.read() == b"", url
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(f"{base}/ws?token=wrong")
        assert refused.value.status == 403
        async with client.get(f"{base}/?token={server.token}", headers={"Origin": base}) as response:
            assert response.status == 200 and "Driftwave live" in await response.text()


async def test_audio_from_the_page_gives_the_offline_envelopes(served, tmp_path):
    server, source, _ = served
    path = stepped_tones(tmp_path / "steps.wav")
    track = load_audio(path)
    offline = offline_raw(path, 40)
    async with aiohttp.ClientSession() as client:
        page = await client.ws_connect(f"ws://127.0.0.1:{server.port}/ws?token={server.token}")
        await page.send_str(json.dumps({"type": "hello", "rate": track.rate, "audio": True}))
        await until(lambda: source.envelopes.rate == track.rate, "the page's rate")
        envelopes = source.envelopes
        checked = 0
        for start in range(0, len(track.samples), 2048):
            block = track.samples[start : start + 2048].astype("<f4")
            await page.send_bytes(struct.pack("<d", 1000.0 + start) + block.tobytes())
            if start // 2048 % 7 == 6:  # now and then: wait for the worker, compare with the analysis
                await until(lambda: not envelopes.blocks and envelopes.frames > 0, "the blocks taken in")
                await asyncio.sleep(0)
                if 0 < envelopes.frames <= 40:
                    np.testing.assert_allclose(
                        envelopes.latest_raw, offline[envelopes.frames - 1], rtol=1e-3, atol=1e-5
                    )
                    checked += 1
        await page.close()
    assert checked >= 3
    assert envelopes.latest_stamp is not None and envelopes.latest_stamp >= 1000.0


async def test_frames_reach_the_page_and_its_quick_controls_apply(tmp_path):
    settings = live_settings()
    source = PushedSource(settings.audio.filters, FPS)
    session = LiveSession(settings, load_backend(ModelSettings(backend="preview")), source)
    server = LiveServer(source, port=free_port(), on_control=lambda m: quick_control(session, m, tmp_path / "snaps"))
    server.start()
    try:
        async with aiohttp.ClientSession() as client:
            page = await client.ws_connect(f"ws://127.0.0.1:{server.port}/ws?token={server.token}")
            await until(lambda: server.viewers, "the page to be a viewer")
            from engine.images import to_array

            for _ in range(3):
                status = await asyncio.to_thread(session.step)
                server.publish(to_array(session.image), {"frame": status.frame, "stamp": None, "audio": status.audio})
            message = await page.receive(timeout=30)
            assert message.type == aiohttp.WSMsgType.BINARY
            length = struct.unpack(">I", message.data[:4])[0]
            header = json.loads(message.data[4 : 4 + length])
            picture = cv2.imdecode(np.frombuffer(message.data[4 + length :], np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (settings.image.H, settings.image.W, 3) and header["frame"] in (0, 1, 2)
            await page.send_str(json.dumps({"type": "control", "action": "freeze"}))
            await until(lambda: session.controls.frozen, "the freeze key")
            await page.send_str(json.dumps({"type": "control", "action": "strength", "step": 0.05}))
            await until(lambda: session.controls.strength is not None, "the strength key")
            assert session.controls.strength == pytest.approx(session.last_params.strength + 0.05)
            await page.send_str(json.dumps({"type": "control", "action": "prompt", "index": 1}))
            await until(lambda: session.controls.prompt == 1, "prompt key 2")
            await page.close()
    finally:
        server.close()
        source.close()


async def test_malformed_messages_are_dropped_with_one_line_each(served):
    server, _, said = served
    async with aiohttp.ClientSession() as client:
        page = await client.ws_connect(f"ws://127.0.0.1:{server.port}/ws?token={server.token}")
        for _ in range(3):
            await page.send_str("{not json")
            await page.send_bytes(b"\x00" * 13)  # audio before hello, and the wrong size
        await page.send_str(json.dumps({"type": "hello", "rate": 5, "audio": True}))
        await until(lambda: len(said) >= 3, "the lines")
        await page.send_str(json.dumps({"type": "latency", "ms": 42}))
        await until(lambda: server.latency_ms == 42, "the page's latency")
        assert not page.closed
        await page.close()
    assert sorted(said) == [
        "live page: dropped a hello without a usable sample rate",
        "live page: dropped a malformed message",
        "live page: dropped audio from a page that did not say hello first",
    ]


def test_a_port_in_use_is_named_with_the_option_to_change_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        source = PushedSource(live_settings().audio.filters, FPS)
        try:
            with pytest.raises(DriftwaveError, match=f"port {port} is already in use") as error:
                LiveServer(source, port=port).start()
            assert "--serve PORT" in error.value.hint
        finally:
            source.close()


def test_a_recording_follows_the_page_to_its_sample_rate(tmp_path):
    import soundfile

    source = PushedSource(live_settings().audio.filters, FPS)  # 48 kHz until the page says
    try:
        source.envelopes.record_to(tmp_path / "heard.wav")
        source.start(22050)
        block = np.sin(np.arange(2048) / 7).astype("<f4")
        source.push(block)  # unstamped: straight to the filters, past the jitter buffer
        source.push(block)
        source.envelopes.stop_recording()
    finally:
        source.close()
    heard, rate = soundfile.read(tmp_path / "heard.wav", dtype="float32")
    assert rate == 22050 and np.array_equal(heard, np.concatenate([block, block]))
