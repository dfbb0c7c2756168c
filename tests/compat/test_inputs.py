"""Input media through the google-genai SDK reach the provider in its own form, or are refused
with 400 before anything runs (docs/api.md, "Every create() parameter")."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.compat.recording import (
    create,
    fake,
    last_body,
    mode,
    refused,
    says,
    srv,
    start_server,
)
from tests.runtime.api.conftest import ServerThread
from tests.runtime.providers.fakes import FakeServer

__all__ = ["fake", "mode", "srv", "start_server"]

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()


def _image_input(**source: Any) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image", **source},
    ]


def test_inline_image_reaches_openai_as_a_data_url(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(says("openai", "a cat"))

    r = create(
        srv.url, mode, model="openai:gpt-fake", input=_image_input(data=PNG, mime_type="image/png")
    )

    assert r.status == "completed" and r.output_text == "a cat"
    (user,) = [m for m in last_body(fake)["messages"] if m["role"] == "user"]
    assert user["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]


def test_image_uri_reaches_openai_as_a_url(srv: ServerThread, fake: FakeServer, mode: str) -> None:
    fake.add(says("openai", "a dog"))

    create(
        srv.url,
        mode,
        model="openai:gpt-fake",
        input=_image_input(uri="https://example.org/dog.jpg", mime_type="image/jpeg"),
    )

    (user,) = [m for m in last_body(fake)["messages"] if m["role"] == "user"]
    assert user["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.org/dog.jpg"},
    }


def test_image_and_document_reach_anthropic_as_blocks(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(says("anthropic", "seen"))

    create(
        srv.url,
        mode,
        model="anthropic:claude-fake",
        input=[
            {"type": "text", "text": "Compare"},
            {"type": "image", "uri": "https://example.org/a.png", "mime_type": "image/png"},
            {"type": "document", "data": PDF, "mime_type": "application/pdf"},
        ],
    )

    (user,) = last_body(fake)["messages"]
    assert user["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "url", "url": "https://example.org/a.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        },
    ]


def test_media_reach_gemini_as_inline_data_and_file_data(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(says("gemini", "heard"))

    create(
        srv.url,
        mode,
        model="gemini:gemini-fake",
        input=[
            {"type": "text", "text": "Describe"},
            {"type": "audio", "data": PNG, "mime_type": "audio/wav"},
            {"type": "video", "uri": "gs://bucket/v.mp4", "mime_type": "video/mp4"},
        ],
    )

    (content,) = last_body(fake)["contents"]
    text, inline, file = content["parts"]
    assert text == {"text": "Describe"}
    assert inline["inlineData"]["data"] == PNG
    assert "audio/wav" in inline["inlineData"].values()
    assert "gs://bucket/v.mp4" in file["fileData"].values()


@pytest.mark.parametrize(
    ("model", "item", "words"),
    [
        (
            "openai:gpt-fake",
            {"type": "audio", "data": PNG, "mime_type": "audio/wav"},
            "audio content is not supported",
        ),
        (
            "openai:gpt-fake",
            {"type": "document", "data": PDF, "mime_type": "application/pdf"},
            "document content is not supported",
        ),
        (
            "anthropic:claude-fake",
            {"type": "video", "uri": "https://example.org/v.mp4", "mime_type": "video/mp4"},
            "video content is not supported",
        ),
        (
            "openai:gpt-fake",
            {"type": "image", "data": PNG, "mime_type": "image/tiff"},
            "image/tiff",
        ),
        (
            "openai:gpt-fake",
            {"type": "image", "data": "@@not base64@@", "mime_type": "image/png"},
            "base64",
        ),
        ("openai:gpt-fake", {"type": "image", "data": PNG}, "mime_type"),
        ("openai:gpt-fake", {"type": "image", "uri": "gs://b/x.png"}, "http(s)"),
    ],
)
def test_media_a_provider_cannot_take_are_400(
    srv: ServerThread, fake: FakeServer, mode: str, model: str, item: dict[str, Any], words: str
) -> None:
    text = refused(srv.url, mode, model=model, input=[{"type": "text", "text": "hi"}, item])

    assert words in text
    assert fake.requests == []


def test_media_for_the_scripted_model_are_400(srv: ServerThread, mode: str, tmp_path: Any) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("turns: [{text: hi}]\n")

    text = refused(
        srv.url,
        mode,
        model=f"scripted:{script}",
        input=_image_input(data=PNG, mime_type="image/png"),
    )

    assert "image content is not supported" in text
