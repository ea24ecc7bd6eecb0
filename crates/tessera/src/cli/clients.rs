//! `tessera clients create | rotate-secret | disable`: operator tasks on service accounts,
//! each audited as done by `system`. Secrets are printed once and never stored in the clear.

use super::ClientsAction;
use crate::audit::Actor;
use crate::clients::{self, Client};
use crate::config::Config;
use crate::db::{Create, Db};
use crate::http::client::RequestMeta;

pub(super) async fn run(config: &Config, action: ClientsAction) -> anyhow::Result<()> {
    let db = Db::connect(&config.database, Create::Never).await?;
    let outcome = match action {
        ClientsAction::Create {
            name,
            tenant,
            scopes,
        } => {
            let tenant_id = super::users::tenant_id(&db, tenant.as_deref()).await?;
            let name = name.trim();
            anyhow::ensure!(!name.is_empty(), "--name: must not be empty");
            let scopes =
                clients::parse_scopes(&scopes).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let mut tx = db.begin_write().await?;
            let (client, secret) = clients::create(
                &mut tx,
                &tenant_id,
                name,
                &scopes,
                &Actor::System,
                &RequestMeta::default(),
            )
            .await?;
            tx.commit().await?;
            println!("client_id: {}", client.id);
            println!("client_secret: {}", secret.expose());
            println!("(the secret is shown only now; `tessera clients rotate-secret` replaces it)");
            Ok(())
        }
        ClientsAction::RotateSecret { client_id } => {
            let client = find(&db, &client_id).await?;
            let secret =
                clients::rotate_secret(&db, &client, &Actor::System, &RequestMeta::default())
                    .await?
                    .0;
            println!("client_secret: {}", secret.expose());
            Ok(())
        }
        ClientsAction::Disable { client_id } => {
            let mut client = find(&db, &client_id).await?;
            client.active = false;
            clients::update(&db, &client, &Actor::System, &RequestMeta::default()).await?;
            println!("disabled client {}", client.id);
            Ok(())
        }
    };
    db.close().await;
    outcome
}

async fn find(db: &Db, client_id: &str) -> anyhow::Result<Client> {
    clients::find(db, client_id, None)
        .await?
        .ok_or_else(|| anyhow::anyhow!("CLIENT_ID: no client `{client_id}`"))
}
