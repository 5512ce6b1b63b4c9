"""``inhouse demo`` (``make demo``): the whole journey on the embedded default, then a summary.

cluster up → seed MNIST (SQLite) → train the seed's example as a Ray job (DDP;
:mod:`inhouse.cli.demo_seed`) → register → deploy on Serve →
a few real predictions over HTTP → (second act, :mod:`inhouse.cli.demo_retrain`) the coordinator
retrains on new rows and promotes by canary → (chat act, :mod:`inhouse.cli.demo_llm`) a private
LLM answers through the OpenAI API and its answer is explained → summary. Every step is
idempotent, so rerunning works; ``inhouse demo --llm`` runs the chat act alone.
"""

from __future__ import annotations

import argparse
from typing import Any

from inhouse import local_cluster, services
from inhouse.cli.auth import authorize
from inhouse.cli.parser import leaf
from inhouse.cli.ray_ops import deploy, run_job
from inhouse.client import predict_rows
from inhouse.config import Settings, TrainSettings
from inhouse.console import step
from inhouse.flags import add_section_flags, section_argv


def add_parser(commands: Any) -> None:
    """Register ``demo`` on the ``inhouse`` sub-parsers."""
    demo = leaf(
        commands,
        "demo",
        cmd_demo,
        "the whole journey: cluster, data, train, serve, then new rows retrained and promoted",
    )
    add_section_flags(demo, TrainSettings)
    demo.add_argument(
        "--no-retrain-act",
        action="store_true",
        help="stop after serving (skip the coordinator retraining on new rows)",
    )
    demo.add_argument(
        "--no-chat-act",
        action="store_true",
        help="skip the chat act (SmolLM2 served behind the OpenAI API, its answer explained)",
    )
    demo.add_argument(
        "--llm",
        action="store_true",
        help="run the chat act alone: import SmolLM2, serve it, ask through the openai "
        "client (streamed), explain the answer",
    )


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    if args.llm:
        from inhouse.cli.demo_llm import print_chat_summary, run_chat_act

        print_chat_summary(settings, run_chat_act(settings, also_serve=[]))
        return 0
    return run_demo(
        settings,
        epochs=None,
        retrain_act=not args.no_retrain_act,
        chat_act=not args.no_chat_act,
    )


def run_demo(
    settings: Settings,
    *,
    epochs: int | None = None,
    retrain_act: bool = True,
    chat_act: bool = True,
) -> int:
    """Run every step (the coordinator's act unless ``retrain_act`` is off); print a summary."""
    from inhouse.cli.demo_seed import mapping_lines, seed_example
    from inhouse.data import seed

    settings = settings.model_copy(update={"train": seed_example(settings.train)})
    epochs = settings.train.epochs if epochs is None else epochs
    with step("1/7 local Ray cluster (token auth, dashboard on 127.0.0.1)"):
        started = local_cluster.start(settings)
        print(f"    {'started' if started else 'already running'}: {settings.ray.dashboard_url}")
    with step(f"2/7 data: seeding {settings.train.dataset} into SQL"):
        from inhouse.schema import get_engine

        info, created = seed(get_engine(settings.db_url), settings.train.dataset)
        print(
            f"    {'created' if created else 'already there'}: {info.train_rows} train / "
            f"{info.test_rows} held-out test rows in {settings.db_url}"
        )
    print(
        f"==> 3/7 training {settings.train.model} as a Ray job ({epochs} epochs, "
        f"{settings.train.num_workers} DDP workers)"
    )
    authorize(settings, action="train:submit", resource=settings.train.model, detail="demo")
    result = run_job(settings, "inhouse.jobs.train", section_argv(settings.train), epochs=epochs)
    served = result["served_version"]
    with step(f"4/7 deploying {settings.train.model} v{served} (the champion) on Ray Serve"):
        authorize(settings, action="model:deploy", resource=settings.train.model, detail="demo")
        deploy(settings, [settings.train.model])
    print("==> 5/7 predictions over HTTP with an API token (held-out test rows)")
    token_path = services.ensure_client_token(settings)
    predict_rows(settings, settings.train.model, inline=None, from_test=5)
    from inhouse.cli.demo_explain import explain_test_row, explanation_line

    with step("5/7 explaining held-out row 0 on the explainer sidecar (JSON + PNG)"):
        explained = explain_test_row(settings, settings.train.model, settings.train.dataset)
    serve_url = settings.serve_url
    act = None
    if retrain_act:
        from inhouse.cli.demo_retrain import run_retrain_act

        act = run_retrain_act(settings, result["model"], dataset=settings.train.dataset)
    chat = None
    if chat_act:
        from inhouse.cli.demo_llm import run_chat_act

        chat = run_chat_act(settings, also_serve=[settings.train.model])
    print()
    print("=" * 72)
    compressed = result["compressed"]
    print(f" model          {result['model']} v{served} (champion)")
    print("\n".join(mapping_lines(settings.train)))
    if compressed and compressed["version"] == served:
        print(
            f" compression    v{served} = v{result['version']} pruned 90% + int8: "
            f"{compressed['size_ratio']:.1f}x smaller, gate passed"
        )
        print(
            f" test accuracy  {compressed['test_accuracy']:.4f} on {info.test_rows} held-out rows "
            f"(float v{result['version']}: {result['test_accuracy']:.4f})"
        )
    else:
        if compressed:
            print(f" compression    {compressed['message']}")
        print(f" test accuracy  {result['test_accuracy']:.4f} on {info.test_rows} held-out rows")
    print(explanation_line(explained))
    if act is not None:
        print(
            f" retrain act    {act['outcome']} after {act['seconds']:.0f} s; champion now "
            f"v{act['champion']}; answers by version {act['served']}, "
            f"{act['failed_requests']} failed"
        )
        print(f" coordinator    inhouse coordinator status {result['model']}  (stop: … stop)")
        print(f" rollback       inhouse rollback {result['model']}")
    if chat is not None:
        from inhouse.cli.demo_llm import chat_summary_lines

        print("\n".join(chat_summary_lines(settings, chat)))
    print(f" dashboard      {settings.ray.dashboard_url}")
    print(f" serve          {serve_url}/v2/models/{result['model']}/infer  (OIP v2)")
    print(f"                {serve_url}/v1/models/{result['model']}:predict (KServe v1)")
    print(f" api token      {token_path} (role predictor; send 'Authorization: Bearer <token>')")
    print(f" tensorboard    {result['tensorboard']}")
    print(f" retrain        {local_cluster.submit_line(settings)}")
    print(" stop           make down")
    print("=" * 72)
    return 0
