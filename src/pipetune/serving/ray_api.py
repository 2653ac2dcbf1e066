"""Every call pipetune makes into Ray Serve's control plane, and the one private API among them.

Public APIs: `serve.start` (with the options of `ServeOptions`), `serve.status`, `serve.shutdown`,
`serve.get_deployment_handle`, and `ray.serve.schema.ServeDeploySchema` / `ServeInstanceDetails` to validate a
config and read one back.

The private ones, both on the controller client: reading back the configs the cluster runs (`deployed_apps`,
what the dashboard's `GET /api/serve/applications/` answers, without a dashboard), so that a restarted adapter
takes over what serves rather than deploying over it; and deploying a whole multi-application config in place (what `serve deploy` does through the
dashboard's REST API) from the driver, without a dashboard, is only offered by the controller client
(`serve.context._get_global_client().deploy_apps`). `serve.run` is no substitute: it takes one built
application, and redeploying with it restarts the replicas of every deployment whose code or args it sees
again. So that call lives here and nowhere else, behind a version check: Ray releases outside
TESTED_RAY (the range pyproject.toml pins) are refused with a clear error rather than trusted to behave.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipetune.serving.config import ServeOptions, ServingError

if TYPE_CHECKING:
    from ray.serve._private.client import ServeControllerClient

TESTED_RAY = ((2, 60), (2, 61))  # [lowest, first untested) major.minor: keep in step with pyproject.toml's pin


def check_ray_version(version: str | None = None) -> None:
    """Refuse a Ray release outside TESTED_RAY: the private deploy call below may have changed there."""
    if version is None:
        import ray

        version = ray.__version__
    m = re.match(r"(\d+)\.(\d+)", version)
    (lo, hi) = TESTED_RAY
    if m is None or not lo <= (int(m.group(1)), int(m.group(2))) < hi:
        raise ServingError(
            f"Ray {version} is not a release pipetune's live runtime is tested with (>={lo[0]}.{lo[1]}, "
            f"<{hi[0]}.{hi[1]}): install one, e.g. pip install 'ray[serve]>={lo[0]}.{lo[1]},<{hi[0]}.{hi[1]}'"
        )


def start_serve(opts: ServeOptions) -> None:
    """Start Ray Serve on the connected Ray cluster (the proxy and HTTP options: `ServeOptions`)."""
    from ray import serve

    check_ray_version()
    serve.start(proxy_location=opts.proxy_location, http_options=opts.http_options())


class ServeDeployer:
    """Deploys a whole Serve config in place (`deploy_apps`): applications whose config changed are updated,
    those no longer named are deleted (draining their requests), the rest are left alone. Blocks for one
    controller RPC, never for the applications to become ready."""

    def __init__(self) -> None:
        from ray.serve import context

        check_ray_version()
        client = context._get_global_client()
        if client is None:  # pragma: no cover - it raises instead unless told otherwise
            raise ServingError("Ray Serve is not running: start it first (serve.start)")
        self._client: ServeControllerClient = client

    def deploy(self, config: dict[str, Any]) -> None:
        from ray.serve.schema import ServeDeploySchema

        self._client.deploy_apps(ServeDeploySchema.model_validate(config))

    def shutdown(self) -> None:
        """Shut Ray Serve down: every application drains and goes."""
        shutdown_serve()


def deployed_apps() -> dict[str, dict[str, Any] | None]:
    """Every Serve application on the connected cluster -> the config it was deployed with (as `serve deploy`
    takes it; None when Ray holds none, e.g. while it is deleted); {} when Serve is not running there."""
    from ray.serve import context
    from ray.serve.schema import ServeInstanceDetails

    check_ray_version()
    client = context._get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return {}
    details = ServeInstanceDetails.model_validate(client.get_serve_details())
    return {
        name: (app.deployed_app_config.model_dump(mode="json", exclude_unset=True) if app.deployed_app_config else None)
        for name, app in details.applications.items()
    }


def normalised_apps(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A Serve config's applications as `deployed_apps` reads them back (validated, set fields only)."""
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    return {app.name: app.model_dump(mode="json", exclude_unset=True) for app in schema.applications}


def serve_status() -> Any:
    """Ray Serve's status (`serve.status()`): one controller RPC."""
    from ray import serve

    return serve.status()


def deployment_handle(deployment: str, app: str) -> Any:
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name=app)


def shutdown_serve() -> None:
    from ray import serve

    serve.shutdown()
