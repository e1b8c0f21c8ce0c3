//! The websocket_multiplayer demo's turn-based dice game, headless, over
//! `WebSocketMultiplayerPeer` with sub-protocol `ludus`.
//!
//! ```text
//! cargo run --example multiplayer -- --host [--port 8080] [--bind 127.0.0.1] [--name Host]
//!     [--players 2] [--rounds 3] [--auto]
//! cargo run --example multiplayer -- --join ws://127.0.0.1:8080 --name NAME [--auto]
//! ```
//! The host is player 1 and the authority, as in Godot's demo: it keeps the player list,
//! whose turn it is and the scores; players only ask for an action (`roll` or `pass`) and
//! the host checks that it is theirs to take ("Someone is trying to cheat!") and rolls the
//! dice (0-99, as the demo's `randi() % 100`). The game starts once `--players` players
//! (the host included) are in; each round everyone takes one turn; after `--rounds` rounds
//! the highest total wins, everyone prints `Game over. Winner: NAME with N points` and
//! exits.
//!
//! On your turn type `roll` or `pass` and Enter; with `--auto` the program plays for you.
//! The demo's RPCs become RAW packets (`send_bytes`) holding one text command each:
//! players send `name <name>` and `action <roll|pass>`; the host sends `add <id> <name>`,
//! `name <id> <name>`, `del <id>`, `turn <id>`, `log <text>` and `over <text>`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wspeer::{
    ConnectionStatus, MultiplayerEvent, MultiplayerPeer, TARGET_PEER_BROADCAST, TARGET_PEER_SERVER,
    WebSocketMultiplayerPeer,
};

const PROTOCOL: &str = "ludus";
const ACTIONS: [&str; 2] = ["roll", "pass"];
/// How long `--auto` "thinks" before acting, so a game can be followed as it is played.
const AUTO_DELAY: Duration = Duration::from_millis(50);
/// After the game, how long the host waits for players to leave before closing.
const LINGER: Duration = Duration::from_secs(2);
const FRAME: Duration = Duration::from_millis(5);
const USAGE: &str = "usage: multiplayer --host [--port 8080] [--bind 127.0.0.1] [--name Host] \
                     [--players 2] [--rounds 3] [--auto]\n       \
                     multiplayer --join URL --name NAME [--auto]";

enum Role {
    Host {
        port: u16,
        bind: String,
        players: usize,
        rounds: u32,
    },
    Join {
        url: String,
    },
}

struct Options {
    role: Role,
    name: String,
    auto: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut host = false;
    let mut url = None;
    let mut port = 8080;
    let mut bind = "127.0.0.1".to_string();
    let mut name = None;
    let mut players = 2;
    let mut rounds = 3;
    let mut auto = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--host" => host = true,
            "--join" => url = Some(value("--join")?),
            "--port" => {
                let v = value("--port")?;
                port = v.parse().map_err(|_| format!("bad port {v:?}"))?;
            }
            "--bind" => bind = value("--bind")?,
            "--name" => name = Some(value("--name")?),
            "--players" => {
                let v = value("--players")?;
                players = v
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(format!("bad player count {v:?}"))?;
            }
            "--rounds" => {
                let v = value("--rounds")?;
                rounds = v
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(format!("bad round count {v:?}"))?;
            }
            "--auto" => auto = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let role = match (host, url) {
        (true, None) => Role::Host {
            port,
            bind,
            players,
            rounds,
        },
        (false, Some(url)) => Role::Join { url },
        _ => return Err(format!("give either --host or --join URL\n{USAGE}")),
    };
    let name = match (&role, name) {
        (_, Some(name)) if !name.trim().is_empty() => name.trim().to_string(),
        (Role::Host { .. }, None) => "Host".to_string(),
        _ => return Err("--join needs --name NAME".into()),
    };
    Ok(Options { role, name, auto })
}

/// Lines typed on stdin, read on their own thread so the frame never blocks.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line.trim().to_string()).is_err() {
                break;
            }
        }
    });
    rx
}

/// 0 to 99, from the OS-seeded std hasher keys (a demo needs no better dice).
fn roll_die() -> u32 {
    (RandomState::new().build_hasher().finish() % 100) as u32
}

fn send(peer: &mut WebSocketMultiplayerPeer, to: i32, command: &str) {
    if let Err(e) = peer.send_bytes(command.as_bytes(), to) {
        eprintln!("Cannot send {command:?} to {to}: {e}");
    }
}

// ----- the host: the game's authority -----

struct Player {
    id: i32,
    name: String,
    /// The player told us its name: it counts for the start of the game.
    named: bool,
    score: u32,
}

struct Game {
    players: Vec<Player>,
    /// Index into `players` of whose turn it is.
    turn: usize,
    round: u32,
    rounds: u32,
    needed: usize,
    started: bool,
    over: bool,
}

impl Game {
    fn name_of(&self, id: i32) -> String {
        self.players
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_string(), |p| p.name.clone())
    }

    fn current(&self) -> Option<i32> {
        self.players.get(self.turn).map(|p| p.id)
    }
}

/// Sends a log line to every player and prints it.
fn log_all(peer: &mut WebSocketMultiplayerPeer, text: &str) {
    println!("{text}");
    send(peer, TARGET_PEER_BROADCAST, &format!("log {text}"));
}

fn announce_turn(peer: &mut WebSocketMultiplayerPeer, game: &Game) {
    if let Some(id) = game.current() {
        println!("Turn: {}", game.name_of(id));
        send(peer, TARGET_PEER_BROADCAST, &format!("turn {id}"));
    }
}

fn maybe_start(peer: &mut WebSocketMultiplayerPeer, game: &mut Game) {
    if game.started {
        return;
    }
    let ready = game.players.iter().filter(|p| p.named).count();
    let missing = game.needed.saturating_sub(ready);
    if missing > 0 {
        log_all(peer, &format!("Waiting for {missing} more player(s)"));
        return;
    }
    game.started = true;
    game.turn = 0;
    let names: Vec<&str> = game.players.iter().map(|p| p.name.as_str()).collect();
    log_all(
        peer,
        &format!(
            "The game starts: {} ({} rounds)",
            names.join(", "),
            game.rounds
        ),
    );
    announce_turn(peer, game);
}

/// The demo's `request_action`: only the player whose turn it is may act.
fn request_action(peer: &mut WebSocketMultiplayerPeer, game: &mut Game, from: i32, action: &str) {
    if !game.started || game.over {
        return log_all(peer, "The game is not running");
    }
    if game.current() != Some(from) {
        return log_all(peer, &format!("Someone is trying to cheat! {from}"));
    }
    if !ACTIONS.contains(&action) {
        return log_all(peer, &format!("Invalid action: {action}"));
    }
    let player = &mut game.players[game.turn];
    if action == "roll" {
        let value = roll_die();
        player.score += value;
        let line = format!("{}: rolls {value}", player.name);
        log_all(peer, &line);
    } else {
        let line = format!("{}: passes", player.name);
        log_all(peer, &line);
    }
    game.turn += 1;
    if game.turn >= game.players.len() {
        game.turn = 0;
        game.round += 1;
        if game.round >= game.rounds {
            return finish(peer, game);
        }
    }
    announce_turn(peer, game);
}

fn finish(peer: &mut WebSocketMultiplayerPeer, game: &mut Game) {
    game.over = true;
    let scores: Vec<String> = game
        .players
        .iter()
        .map(|p| format!("{} {}", p.name, p.score))
        .collect();
    log_all(peer, &format!("Scores: {}", scores.join(", ")));
    // The first player with the best total wins a tie.
    let best = game.players.iter().map(|p| p.score).max().unwrap_or(0);
    let winner = game.players.iter().find(|p| p.score == best);
    let text = match winner {
        Some(w) => format!("Winner: {} with {} points", w.name, w.score),
        None => "No players left".to_string(),
    };
    println!("Game over. {text}");
    send(peer, TARGET_PEER_BROADCAST, &format!("over {text}"));
}

fn host(
    options: &Options,
    port: u16,
    bind: &str,
    needed: usize,
    rounds: u32,
) -> Result<(), String> {
    let mut peer = WebSocketMultiplayerPeer::new();
    peer.set_supported_protocols(&[PROTOCOL]);
    peer.create_server(port, bind, None)
        .map_err(|e| format!("Unable to host: {e}"))?;
    let addr = peer.local_addr().ok_or("no local address")?;
    println!("Listening on ws://{addr}");
    let mut game = Game {
        players: vec![Player {
            id: TARGET_PEER_SERVER,
            name: options.name.clone(),
            named: true,
            score: 0,
        }],
        turn: 0,
        round: 0,
        rounds,
        needed,
        started: false,
        over: false,
    };
    maybe_start(&mut peer, &mut game);
    let typed = stdin_lines();
    let mut turn_started = Instant::now();
    let mut last_turn = None;
    let mut over_since: Option<Instant> = None;
    loop {
        peer.poll();
        while let Some(event) = peer.pop_event() {
            match event {
                MultiplayerEvent::PeerConnected(id) => {
                    // The demo's on_peer_add: the newcomer learns the table, everyone the
                    // newcomer (named once it tells us its name).
                    for p in &game.players {
                        send(&mut peer, id, &format!("add {} {}", p.id, p.name));
                    }
                    game.players.push(Player {
                        id,
                        name: format!("Player {id}"),
                        named: false,
                        score: 0,
                    });
                    send(&mut peer, TARGET_PEER_BROADCAST, &format!("add {id}"));
                    if game.started {
                        send(
                            &mut peer,
                            id,
                            &format!("turn {}", game.current().unwrap_or(0)),
                        );
                    }
                }
                MultiplayerEvent::PeerDisconnected(id) => {
                    let Some(pos) = game.players.iter().position(|p| p.id == id) else {
                        continue;
                    };
                    let gone = game.players.remove(pos);
                    send(&mut peer, TARGET_PEER_BROADCAST, &format!("del {id}"));
                    if game.over {
                        continue;
                    }
                    log_all(&mut peer, &format!("{} left", gone.name));
                    if game.turn > pos {
                        game.turn -= 1;
                    }
                    if game.turn >= game.players.len() {
                        game.turn = 0;
                    }
                    if game.started {
                        announce_turn(&mut peer, &game);
                    }
                }
                _ => {}
            }
        }
        while let Some((from, packet)) = peer.recv() {
            let text = String::from_utf8_lossy(&packet).into_owned();
            let (verb, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
            match verb {
                "name" if !rest.trim().is_empty() => {
                    let name = rest.trim().to_string();
                    if let Some(p) = game.players.iter_mut().find(|p| p.id == from) {
                        p.name = name.clone();
                        p.named = true;
                    }
                    send(
                        &mut peer,
                        TARGET_PEER_BROADCAST,
                        &format!("name {from} {name}"),
                    );
                    log_all(&mut peer, &format!("{name} joined"));
                    maybe_start(&mut peer, &mut game);
                }
                "action" => request_action(&mut peer, &mut game, from, rest.trim()),
                _ => eprintln!("Ignoring {text:?} from {from}"),
            }
        }

        // The host's own turn.
        let active_turn = if game.started && !game.over {
            game.current()
        } else {
            None
        };
        if active_turn != last_turn {
            last_turn = active_turn;
            turn_started = Instant::now();
            if active_turn == Some(TARGET_PEER_SERVER) && !options.auto {
                println!("Your turn: type roll or pass");
            }
        }
        if active_turn == Some(TARGET_PEER_SERVER)
            && options.auto
            && turn_started.elapsed() >= AUTO_DELAY
        {
            request_action(&mut peer, &mut game, TARGET_PEER_SERVER, "roll");
            // Seen as a new turn even when it comes straight back to the host.
            last_turn = None;
        }
        while let Ok(line) = typed.try_recv() {
            if !line.is_empty() {
                request_action(&mut peer, &mut game, TARGET_PEER_SERVER, &line);
                last_turn = None;
            }
        }

        if game.over {
            let since = *over_since.get_or_insert_with(Instant::now);
            // Players leave when they read `over`; then the host closes.
            if peer.peer_ids().is_empty() || since.elapsed() > LINGER {
                peer.close();
                return Ok(());
            }
        }
        std::thread::sleep(FRAME);
    }
}

// ----- a player -----

fn join(options: &Options, url: &str) -> Result<(), String> {
    let mut peer = WebSocketMultiplayerPeer::new();
    peer.set_supported_protocols(&[PROTOCOL]);
    peer.create_client(url, None)
        .map_err(|e| format!("Unable to connect to {url}: {e}"))?;
    println!("Connecting to {url}");
    let typed = stdin_lines();
    let mut names: Vec<(i32, String)> = Vec::new();
    let mut my_turn_since: Option<Instant> = None;
    let mut over = false;
    loop {
        peer.poll();
        while let Some(event) = peer.pop_event() {
            match event {
                MultiplayerEvent::ConnectedToServer => {
                    println!("Connected as {}", peer.get_unique_id());
                    send(
                        &mut peer,
                        TARGET_PEER_SERVER,
                        &format!("name {}", options.name),
                    );
                }
                MultiplayerEvent::ConnectionFailed => {
                    let why = peer
                        .get_last_error()
                        .map_or_else(|| "refused".to_string(), |e| e.to_string());
                    return Err(format!("Connection failed: {why}"));
                }
                MultiplayerEvent::ServerDisconnected if over => return Ok(()),
                MultiplayerEvent::ServerDisconnected => {
                    return Err("Disconnected from the host".into());
                }
                _ => {}
            }
        }
        while let Some((from, packet)) = peer.recv() {
            if from != TARGET_PEER_SERVER {
                continue; // only the host speaks for the game
            }
            let text = String::from_utf8_lossy(&packet).into_owned();
            let (verb, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
            let id_and_name = || {
                let (id, name) = rest.split_once(' ').unwrap_or((rest, ""));
                (id.parse::<i32>().unwrap_or(0), name.to_string())
            };
            match verb {
                "add" | "name" => {
                    let (id, name) = id_and_name();
                    match names.iter_mut().find(|(i, _)| *i == id) {
                        Some(entry) => entry.1 = name,
                        None => names.push((id, name)),
                    }
                }
                "del" => names.retain(|(i, _)| i.to_string() != rest),
                "log" => println!("{rest}"),
                "turn" => {
                    let id: i32 = rest.parse().unwrap_or(0);
                    let name = names
                        .iter()
                        .find(|(i, _)| *i == id)
                        .map_or_else(|| id.to_string(), |(_, n)| n.clone());
                    println!("Turn: {name}");
                    if id == peer.get_unique_id() {
                        my_turn_since = Some(Instant::now());
                        if !options.auto {
                            println!("Your turn: type roll or pass");
                        }
                    } else {
                        my_turn_since = None;
                    }
                }
                "over" => {
                    println!("Game over. {rest}");
                    over = true;
                    let _ = peer.disconnect_peer(TARGET_PEER_SERVER, false);
                }
                _ => eprintln!("Ignoring {text:?}"),
            }
        }
        if options.auto && my_turn_since.is_some_and(|since| since.elapsed() >= AUTO_DELAY) {
            my_turn_since = None;
            send(&mut peer, TARGET_PEER_SERVER, "action roll");
        }
        while let Ok(line) = typed.try_recv() {
            // The host decides whether it is our turn and the action is valid.
            if !line.is_empty() && peer.get_connection_status() == ConnectionStatus::Connected {
                send(&mut peer, TARGET_PEER_SERVER, &format!("action {line}"));
            }
        }
        if over && peer.get_connection_status() == ConnectionStatus::Disconnected {
            return Ok(());
        }
        std::thread::sleep(FRAME);
    }
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let result = match &options.role {
        Role::Host {
            port,
            bind,
            players,
            rounds,
        } => host(&options, *port, bind, *players, *rounds),
        Role::Join { url } => join(&options, url),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
