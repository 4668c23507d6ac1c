//! Extensions (`http::extension_routes`) and instance administration
//! (`http::admin_routes`), one entry per route and method.

use tandem_protocol::extensions::*;

use super::*;

pub fn operations() -> Vec<Op> {
    const O: &str = "/orgs/{id}/extensions";
    const W: &str = "/workspaces/{id}/extensions";
    vec![
        get(
            O,
            "listExtensions",
            "The org's extensions, oldest first (org members)",
        )
        .errors(&[404])
        .page::<Extension>(),
        post(
            O,
            "uploadExtension",
            "Install or upgrade an extension from a zip (org owners)",
        )
        .describe(
            "The body is the zip (`Content-Type: application/zip`, at most \
                 TANDEM_EXTENSIONS_MAX_BYTES: 413 beyond). 201 for a new extension, 200 for an \
                 upgrade (a higher semver version of an installed id), 409 for the same or a \
                 lower version. 422 `invalid_archive`, `unsafe_entry`, `archive_too_large` or \
                 `invalid_manifest`; see proto-docs/extensions.md.",
        )
        .body_with("application/zip", bytes())
        .errors(&[403, 404, 409, 413, 415, 422])
        .ok::<Extension>(201)
        .ok::<Extension>(200),
        get(
            &format!("{O}/{{ext}}"),
            "getExtension",
            "One of the org's extensions (org members)",
        )
        .errors(&[404])
        .ok::<Extension>(200),
        delete(
            &format!("{O}/{{ext}}"),
            "deleteExtension",
            "Remove an extension from the org (org owners)",
        )
        .describe("Its files and every workspace's enablement go with it.")
        .errors(&[403, 404])
        .no_content(),
        get(
            W,
            "listWorkspaceExtensions",
            "The extensions enabled in a workspace, with their settings (members)",
        )
        .errors(&[404])
        .page::<WorkspaceExtension>(),
        put(
            &format!("{W}/{{ext}}"),
            "setWorkspaceExtension",
            "Enable or disable an extension of the org in the workspace (owners)",
        )
        .describe(
            "Settings, when given, replace the stored ones; the settings in effect must fit \
                 the extension's settings schema when given or when enabling (422 \
                 `invalid_settings`). Disabling keeps them.",
        )
        .body::<SetWorkspaceExtension>()
        .errors(&[403, 404])
        .ok::<WorkspaceExtension>(200),
        get(
            &format!("{W}/{{ext}}/files/{{path}}"),
            "getExtensionFile",
            "A file of an extension enabled in the workspace (members)",
        )
        .describe(
            "Read-only, with `X-Content-Type-Options: nosniff`, a sandboxing \
                 `Content-Security-Policy`, and an `ETag` (`If-None-Match` → 304). 404 when the \
                 extension is not enabled in the workspace. `path` may contain `/`.",
        )
        .errors(&[404])
        .answer(200, "The file", Some(("application/octet-stream", bytes())))
        .answer(304, "Not modified", None),
        get(
            "/admin/config",
            "getAdminConfig",
            "Effective configuration, secrets masked (instance admins)",
        )
        .describe("Instance admins are the verified addresses of TANDEM_ADMINS; others get 403.")
        .errors(&[403])
        .ok::<AdminConfig>(200),
        post(
            "/admin/config/validate",
            "validateConfig",
            "Check settings (environment variables) without applying them (instance admins)",
        )
        .body::<ValidateConfigRequest>()
        .errors(&[403])
        .ok::<ValidateConfigResponse>(200),
        post(
            "/admin/config/reload",
            "reloadConfig",
            "Re-read TANDEM_RELOAD_FILE and apply the reloadable settings (instance admins)",
        )
        .describe(
            "Reloadable: RUST_LOG, TANDEM_CORS_ORIGINS, TANDEM_AUTH_RATE_PER_MINUTE. All or \
                 nothing: 422 naming the invalid settings (or a missing reload file), and \
                 nothing changes. SIGHUP does the same.",
        )
        .errors(&[403, 422])
        .ok::<RuntimeSettings>(200),
    ]
}
