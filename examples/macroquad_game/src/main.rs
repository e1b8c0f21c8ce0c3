//! A two-player dice race drawn with macroquad and played through `examples/mp_server`:
//! wspeer's `WebSocketMultiplayerPeer` is polled once per macroquad frame, and each roll
//! travels as a packet that the server relays to the other player.
//!
//! ```text
//! cargo run --example mp_server
//! cargo run -p wspeer-macroquad-game -- [--url ws://127.0.0.1:8080] [--autoplay TURNS]
//! ```
//! The first two clients on the server race; the lower id starts. On your turn press Space
//! to roll 1-6 and move that many squares; the first to square 30 wins. A client that
//! arrives while two are racing is told the table is full.
//!
//! `--autoplay TURNS` rolls by itself until both players have had TURNS turns (or the race
//! is won), prints a `Result:` line, leaves and exits with 0; 1 if the connection or the
//! race failed. Made for a headless run: `xvfb-run -a <binary> --autoplay 4`.
//!
//! Every move is printed as `Move N: player ID rolls R to square S`, the same line on both
//! clients. There is no authority: each client checks every packet it receives (sent by
//! the player whose turn it is, the next move number, a roll of 1-6) and ignores, with a
//! line saying why, any that is not.

use std::cell::Cell;
use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::ExitCode;
use std::rc::Rc;

use macroquad::prelude::*;
use wspeer::{
    ConnectionStatus, MultiplayerEvent, MultiplayerPeer, TARGET_PEER_BROADCAST, TARGET_PEER_SERVER,
    WebSocketMultiplayerPeer,
};

/// The sub-protocol `mp_server` asks for by default.
const PROTOCOL: &str = "ludus";
/// The square that wins the race.
const FINISH: u32 = 30;
/// Seconds `--autoplay` waits on its turn before rolling, so a race can be followed.
const AUTOPLAY_DELAY: f64 = 0.1;
/// Log lines kept on screen (every line is also printed).
const LOG_LINES: usize = 8;
const USAGE: &str = "usage: wspeer-macroquad-game [--url ws://127.0.0.1:8080] [--autoplay TURNS]";

struct Options {
    url: String,
    autoplay: Option<u32>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        url: "ws://127.0.0.1:8080".into(),
        autoplay: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--url" => options.url = value("--url")?,
            "--autoplay" => {
                let v = value("--autoplay")?;
                let turns = v.parse().ok().filter(|&n: &u32| n >= 1);
                options.autoplay = Some(turns.ok_or(format!("bad turn count {v:?}"))?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// The race as each client keeps it: both apply the same moves in the same order.
#[derive(Debug, Clone, PartialEq)]
struct Race {
    /// The two players, lower id first: the order of turns.
    players: [i32; 2],
    squares: [u32; 2],
    /// Moves made so far; move `n` (from 1) is `players[(n - 1) % 2]`'s.
    moves: u32,
}

impl Race {
    fn new(a: i32, b: i32) -> Race {
        Race {
            players: [a.min(b), a.max(b)],
            squares: [0, 0],
            moves: 0,
        }
    }

    fn winner(&self) -> Option<i32> {
        let seat = self.squares.iter().position(|&s| s >= FINISH)?;
        Some(self.players[seat])
    }

    /// Whose turn it is; `None` once the race is won.
    fn to_move(&self) -> Option<i32> {
        match self.winner() {
            Some(_) => None,
            None => Some(self.players[(self.moves % 2) as usize]),
        }
    }

    /// Applies move `number` by `player`; returns the line that reports it, or why it is
    /// not the next valid move (the race is then unchanged).
    fn apply(&mut self, player: i32, number: u32, roll: u32) -> Result<String, String> {
        let Some(expected) = self.to_move() else {
            return Err("the race is over".into());
        };
        if player != expected {
            return Err(format!("not its turn (player {expected} is to move)"));
        }
        if number != self.moves + 1 {
            return Err(format!("move {number}, expected {}", self.moves + 1));
        }
        if !(1..=6).contains(&roll) {
            return Err(format!("a roll of {roll} is not 1-6"));
        }
        let seat = (self.moves % 2) as usize;
        self.moves = number;
        self.squares[seat] = (self.squares[seat] + roll).min(FINISH);
        Ok(format!(
            "Move {number}: player {player} rolls {roll} to square {}",
            self.squares[seat]
        ))
    }
}

/// The packet for move `number`: text, so that it can be read in a capture.
fn roll_packet(number: u32, roll: u32) -> String {
    format!("roll {number} {roll}")
}

/// The longest packet [`roll_packet`] makes (`roll 4294967295 6`), with room to spare:
/// anything longer is refused unread, so a log line never holds more than this of it.
const MAX_ROLL_PACKET: usize = 32;

/// The move number and roll in a packet from [`roll_packet`].
fn parse_roll(packet: &[u8]) -> Result<(u32, u32), String> {
    if packet.len() > MAX_ROLL_PACKET {
        return Err(format!("{} bytes, too long for a roll", packet.len()));
    }
    let text = std::str::from_utf8(packet).map_err(|_| "not UTF-8 text".to_string())?;
    let mut words = text.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("roll"), Some(number), Some(roll), None) => {
            let number = number
                .parse()
                .map_err(|_| format!("bad move number {number:?}"))?;
            let roll = roll.parse().map_err(|_| format!("bad roll {roll:?}"))?;
            Ok((number, roll))
        }
        _ => Err(format!("not a roll: {text:?}")),
    }
}

/// 1 to 6, from the OS-seeded std hasher keys (a demo needs no better dice).
fn roll_die() -> u32 {
    (RandomState::new().build_hasher().finish() % 6) as u32 + 1
}

/// What this client knows, updated from the network and the keyboard once per frame.
struct Game {
    autoplay: Option<u32>,
    /// Our id, 0 until the server gives it.
    me: i32,
    /// The other clients the server announced, in the order it did.
    others: Vec<i32>,
    /// Whether we had our id before this frame: a client already waiting takes the first
    /// newcomer; a newcomer takes the table as the server describes it on arrival.
    waited: bool,
    race: Option<Race>,
    /// How the game ended for this client: the result, or why it could not play.
    end: Option<Result<String, String>>,
    /// A player of the race who left this frame: judged after this frame's packets, which
    /// may hold its last move.
    departed: Option<i32>,
    /// Our own rolls so far.
    rolled: u32,
    /// When our current turn began (`get_time`), for `--autoplay`.
    turn_began: Option<f64>,
    log: VecDeque<String>,
    frames: u64,
}

impl Game {
    fn new(autoplay: Option<u32>) -> Game {
        Game {
            autoplay,
            me: 0,
            others: Vec::new(),
            waited: false,
            race: None,
            end: None,
            departed: None,
            rolled: 0,
            turn_began: None,
            log: VecDeque::new(),
            frames: 0,
        }
    }

    fn say(&mut self, line: String) {
        println!("{line}");
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    /// Ends the game once: prints the `Result:` line, or the error on stderr.
    fn finish(&mut self, end: Result<String, String>) {
        if self.end.is_some() {
            return;
        }
        match &end {
            Ok(text) => {
                let squares = self.race.as_ref().map_or_else(String::new, |race| {
                    format!(
                        "; squares {}={} {}={}; {} moves",
                        race.players[0],
                        race.squares[0],
                        race.players[1],
                        race.squares[1],
                        race.moves
                    )
                });
                println!("Result: {text}{squares}; {} frames", self.frames);
            }
            Err(why) => eprintln!("Error: {why}"),
        }
        self.end = Some(end);
    }

    fn my_turn(&self) -> bool {
        self.end.is_none() && self.race.as_ref().and_then(Race::to_move) == Some(self.me)
    }

    /// One frame's work after `peer.poll()`: events, seating, packets, our own move.
    fn update(&mut self, peer: &mut WebSocketMultiplayerPeer, now: f64, roll_pressed: bool) {
        self.waited = self.me != 0;
        while let Some(event) = peer.pop_event() {
            self.on_event(peer, event);
        }
        self.seat();
        while let Some((from, packet)) = peer.recv() {
            self.on_packet(from, &packet);
        }
        self.check_autoplay_done();
        if let Some(id) = self.departed.take() {
            self.finish(Err(format!("player {id} left the race")));
        }
        self.play(peer, now, roll_pressed);
        self.check_autoplay_done();
    }

    fn on_event(&mut self, peer: &WebSocketMultiplayerPeer, event: MultiplayerEvent) {
        match event {
            MultiplayerEvent::ConnectedToServer => {
                self.me = peer.get_unique_id();
                self.say(format!("Connected as {}", self.me));
            }
            MultiplayerEvent::PeerConnected(TARGET_PEER_SERVER) => {}
            MultiplayerEvent::PeerConnected(id) => {
                self.others.push(id);
                if self.race.is_some() {
                    self.say(format!("Player {id} joined: the table is full, ignored"));
                }
            }
            MultiplayerEvent::PeerDisconnected(TARGET_PEER_SERVER) => {}
            MultiplayerEvent::PeerDisconnected(id) => {
                self.others.retain(|&other| other != id);
                let racing = self.race.as_ref().is_some_and(|r| r.players.contains(&id));
                if racing {
                    self.departed = Some(id);
                }
            }
            MultiplayerEvent::ConnectionFailed => {
                let why = peer
                    .get_last_error()
                    .map_or_else(|| "refused".to_string(), |e| e.to_string());
                self.finish(Err(format!("cannot connect: {why}")));
            }
            MultiplayerEvent::ServerDisconnected => {
                self.finish(Err("the server closed the connection".into()));
            }
            // RPCs, authentication, replication: this game sends plain packets only.
            _ => {}
        }
    }

    /// Starts the race with the opponent, or gives up if two others are already racing.
    fn seat(&mut self) {
        if self.me == 0 || self.race.is_some() || self.end.is_some() {
            return;
        }
        let opponent = match (self.waited, self.others.as_slice()) {
            (_, []) => return,
            (true, [first, ..]) | (false, [first]) => *first,
            (false, _) => {
                let text = "the table is full: two players are already racing";
                return self.finish(Err(text.into()));
            }
        };
        let race = Race::new(self.me, opponent);
        self.say(format!(
            "Playing against {opponent}: player {} starts",
            race.players[0]
        ));
        self.race = Some(race);
    }

    fn on_packet(&mut self, from: i32, packet: &[u8]) {
        let Some(race) = self.race.as_mut().filter(|r| r.players.contains(&from)) else {
            return self.say(format!("Ignoring a packet from {from}: not racing with us"));
        };
        match parse_roll(packet).and_then(|(number, roll)| race.apply(from, number, roll)) {
            Ok(line) => {
                self.say(line);
                self.check_won();
            }
            Err(why) => self.say(format!("Ignoring a packet from {from}: {why}")),
        }
    }

    fn check_won(&mut self) {
        if let Some(winner) = self.race.as_ref().and_then(Race::winner) {
            self.finish(Ok(format!("player {winner} wins")));
        }
    }

    /// Our turn: roll when Space is pressed, or after a short wait with `--autoplay`.
    fn play(&mut self, peer: &mut WebSocketMultiplayerPeer, now: f64, roll_pressed: bool) {
        if !self.my_turn() {
            self.turn_began = None;
            return;
        }
        let began = *self.turn_began.get_or_insert(now);
        let autoplay_rolls = self
            .autoplay
            .is_some_and(|turns| self.rolled < turns && now - began >= AUTOPLAY_DELAY);
        if !(roll_pressed || autoplay_rolls) {
            return;
        }
        let Some(race) = self.race.as_mut() else {
            return;
        };
        let (number, roll) = (race.moves + 1, roll_die());
        let line = match race.apply(self.me, number, roll) {
            Ok(line) => line,
            Err(why) => return self.finish(Err(format!("our own move is invalid: {why}"))),
        };
        if let Err(e) = peer.send_bytes(roll_packet(number, roll).as_bytes(), TARGET_PEER_BROADCAST)
        {
            return self.finish(Err(format!("cannot send move {number}: {e}")));
        }
        self.rolled += 1;
        self.turn_began = None;
        self.say(line);
        self.check_won();
    }

    /// `--autoplay TURNS`: done once both players had TURNS turns.
    fn check_autoplay_done(&mut self) {
        let (Some(turns), Some(race)) = (self.autoplay, &self.race) else {
            return;
        };
        if self.rolled >= turns && race.moves >= 2 * turns {
            self.finish(Ok(format!("{turns} turns each played")));
        }
    }
}

const BACKGROUND: Color = Color::new(0.09, 0.10, 0.13, 1.0);
const CELL_COLOR: Color = Color::new(0.18, 0.20, 0.25, 1.0);
const FINISH_COLOR: Color = Color::new(0.20, 0.45, 0.25, 1.0);
const SEAT_COLORS: [Color; 2] = [SKYBLUE, ORANGE];

fn draw(game: &Game) {
    clear_background(BACKGROUND);
    draw_text("wspeer dice race", 20.0, 40.0, 36.0, WHITE);
    let status = match (&game.end, &game.race) {
        (Some(Ok(text)), _) => format!("Race over: {text}. Close the window to leave."),
        (Some(Err(why)), _) => format!("Error: {why}"),
        (None, Some(_)) if game.my_turn() => "Your turn: press Space to roll".into(),
        (None, Some(race)) => match race.to_move() {
            Some(player) => format!("Waiting for player {player}"),
            None => String::new(),
        },
        (None, None) if game.me == 0 => "Connecting...".into(),
        (None, None) => format!("Connected as {}: waiting for an opponent", game.me),
    };
    draw_text(&status, 20.0, 72.0, 24.0, LIGHTGRAY);

    if let Some(race) = &game.race {
        // Squares 0 (the start) to FINISH, one lane per player.
        let cell = (screen_width() - 40.0) / (FINISH + 1) as f32;
        for (seat, (&player, &square)) in race.players.iter().zip(&race.squares).enumerate() {
            let top = 100.0 + seat as f32 * (cell + 30.0);
            let you = if player == game.me { " (you)" } else { "" };
            let label = format!("player {player}{you}: square {square}");
            draw_text(&label, 20.0, top + 14.0, 20.0, SEAT_COLORS[seat]);
            for i in 0..=FINISH {
                let x = 20.0 + i as f32 * cell;
                let color = if i == FINISH {
                    FINISH_COLOR
                } else {
                    CELL_COLOR
                };
                draw_rectangle(x, top + 20.0, cell - 2.0, cell - 2.0, color);
            }
            let x = 20.0 + square as f32 * cell + cell / 2.0 - 1.0;
            draw_circle(
                x,
                top + 20.0 + cell / 2.0 - 1.0,
                cell / 3.0,
                SEAT_COLORS[seat],
            );
        }
    }

    for (i, line) in game.log.iter().enumerate() {
        draw_text(line, 20.0, 250.0 + i as f32 * 20.0, 18.0, GRAY);
    }
    let footer = format!("frame {}: wspeer polled once per frame", game.frames);
    draw_text(&footer, 20.0, screen_height() - 12.0, 16.0, DARKGRAY);
}

/// The game's frame loop: `poll()` (never blocks), the game's update, drawing, then
/// `next_frame()` hands the frame back to macroquad.
async fn run(options: Options, mut peer: WebSocketMultiplayerPeer, exit_code: Rc<Cell<u8>>) {
    let mut game = Game::new(options.autoplay);
    let mut leaving = false;
    loop {
        peer.poll();
        let roll_pressed = is_key_pressed(KeyCode::Space);
        game.update(&mut peer, get_time(), roll_pressed);
        if options.autoplay.is_some() && game.end.is_some() {
            // Leave with a close handshake, so the last move is delivered before the end.
            if !leaving && peer.get_connection_status() != ConnectionStatus::Disconnected {
                if let Err(e) = peer.disconnect_peer(TARGET_PEER_SERVER, false) {
                    eprintln!("Cannot leave cleanly: {e}");
                    peer.close();
                }
            }
            leaving = true;
            if peer.get_connection_status() == ConnectionStatus::Disconnected {
                exit_code.set(if matches!(game.end, Some(Ok(_))) {
                    0
                } else {
                    1
                });
                return;
            }
        }
        draw(&game);
        game.frames += 1;
        next_frame().await;
    }
}

fn window_conf() -> Conf {
    Conf {
        window_title: "wspeer dice race".into(),
        window_width: 800,
        window_height: 450,
        ..Conf::default()
    }
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut peer = WebSocketMultiplayerPeer::new();
    peer.set_supported_protocols(&[PROTOCOL]);
    // A bad URL fails here, before a window opens.
    if let Err(e) = peer.create_client(&options.url, None) {
        eprintln!("Cannot connect to {}: {e}", options.url);
        return ExitCode::FAILURE;
    }
    println!("Connecting to {}", options.url);
    // Closing the window ends a windowed game normally, an autoplayed one unfinished.
    let exit_code = Rc::new(Cell::new(u8::from(options.autoplay.is_some())));
    // What `#[macroquad::main]` expands to, called here so that the connection starts
    // before the window opens and `main` can return the exit code.
    macroquad::Window::from_config(window_conf(), run(options, peer, exit_code.clone()));
    ExitCode::from(exit_code.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_alternate_from_the_lower_id() {
        let mut race = Race::new(9, 4);
        assert_eq!(race.to_move(), Some(4));
        assert_eq!(
            race.apply(4, 1, 3).unwrap(),
            "Move 1: player 4 rolls 3 to square 3"
        );
        assert_eq!(race.to_move(), Some(9));
        race.apply(9, 2, 6).unwrap();
        assert_eq!(race.squares, [3, 6]);
        assert_eq!(race.to_move(), Some(4));
    }

    #[test]
    fn invalid_moves_are_refused_and_change_nothing() {
        let mut race = Race::new(4, 9);
        race.apply(4, 1, 2).unwrap();
        let before = race.clone();
        let refusals = [
            (4, 2, 3, "not its turn (player 9 is to move)"),
            (9, 3, 3, "move 3, expected 2"),
            (9, 1, 3, "move 1, expected 2"),
            (9, 2, 0, "a roll of 0 is not 1-6"),
            (9, 2, 7, "a roll of 7 is not 1-6"),
        ];
        for (player, number, roll, why) in refusals {
            assert_eq!(race.apply(player, number, roll), Err(why.to_string()));
            assert_eq!(race, before);
        }
    }

    #[test]
    fn the_first_to_the_finish_wins_and_the_race_stops() {
        let mut race = Race::new(4, 9);
        for number in 1..=9 {
            let player = race.to_move().unwrap();
            race.apply(player, number, 6).unwrap();
        }
        // Player 4 had five sixes: square 30.
        assert_eq!(race.winner(), Some(4));
        assert_eq!(race.squares, [FINISH, 24]);
        assert_eq!(race.to_move(), None);
        assert_eq!(race.apply(9, 10, 6), Err("the race is over".into()));
    }

    #[test]
    fn roll_packets_round_trip_and_junk_is_named() {
        assert_eq!(parse_roll(roll_packet(12, 5).as_bytes()), Ok((12, 5)));
        assert_eq!(parse_roll(b"roll 1"), Err("not a roll: \"roll 1\"".into()));
        assert_eq!(
            parse_roll(b"roll 1 2 3"),
            Err("not a roll: \"roll 1 2 3\"".into())
        );
        assert_eq!(parse_roll(b"roll x 2"), Err("bad move number \"x\"".into()));
        assert_eq!(parse_roll(b"roll 1 -2"), Err("bad roll \"-2\"".into()));
        assert_eq!(parse_roll(&[0xff, 0xfe]), Err("not UTF-8 text".into()));
        let longest = roll_packet(u32::MAX, 6);
        assert_eq!(parse_roll(longest.as_bytes()), Ok((u32::MAX, 6)));
        let long = format!("roll 1 {}", "6".repeat(MAX_ROLL_PACKET));
        let refused = format!("{} bytes, too long for a roll", long.len());
        assert_eq!(parse_roll(long.as_bytes()), Err(refused));
    }

    #[test]
    fn arguments() {
        let args = |list: &[&str]| parse_args(list.iter().map(|s| s.to_string()));
        let options = args(&["--url", "ws://[::1]:9000", "--autoplay", "3"]).unwrap();
        assert_eq!(
            (options.url.as_str(), options.autoplay),
            ("ws://[::1]:9000", Some(3))
        );
        assert!(args(&["--autoplay", "0"]).is_err());
        assert!(args(&["--autoplay"]).is_err());
        assert!(args(&["--turns", "3"]).is_err());
    }
}
