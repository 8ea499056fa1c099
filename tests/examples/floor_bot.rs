//! The floor for the Discord bench: the least a serenity + poise bot can do for `/status` and
//! `/generate` (acknowledge, then answer) with the same crates, intents and gateway settings
//! as comfycord, pointed at a test Discord. Nothing comfycord does beyond this is free.
//!
//! `floor_bot <token> <api base URL> <guild id>`; run by `cargo bench -p tests --bench discord`.

use poise::serenity_prelude as serenity;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Ctx<'a> = poise::Context<'a, (), Error>;

/// Acknowledge, then answer privately.
#[poise::command(slash_command)]
async fn status(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.defer_ephemeral().await?;
    ctx.send(poise::CreateReply::default().content("ok").ephemeral(true))
        .await?;
    Ok(())
}

/// Acknowledge, then answer publicly.
#[poise::command(slash_command)]
async fn generate(ctx: Ctx<'_>, prompt: String, steps: Option<i64>) -> Result<(), Error> {
    ctx.defer().await?;
    ctx.say(format!("{prompt} ({} steps)", steps.unwrap_or(20)))
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(token), Some(base), Some(guild)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: floor_bot <token> <api base URL> <guild id>".into());
    };
    let guild = serenity::GuildId::new(guild.parse()?);
    let http = serenity::HttpBuilder::new(&token)
        .proxy(base.trim_end_matches('/'))
        .ratelimiter_disabled(true)
        .build();
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: vec![status(), generate()],
            initialize_owners: false,
            ..Default::default()
        })
        .setup(move |ctx, _ready, framework| {
            Box::pin(async move {
                poise::builtins::register_in_guild(ctx, &framework.options().commands, guild)
                    .await?;
                Ok(())
            })
        })
        .build();
    let mut client = serenity::ClientBuilder::new_with_http(http, serenity::GatewayIntents::GUILDS)
        .framework(framework)
        .await?;
    client.start().await?;
    Ok(())
}
