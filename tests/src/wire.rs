//! A scripted MongoDB wire-protocol server, standing in for a server version the harness
//! cannot run: neither FerretDB 1.24 nor mongo-java-server 1.47 has transactions, so the
//! transaction tests talk to this instead and check what the host (through the real `mongodb`
//! driver) sends.
//!
//! It speaks `OP_MSG` over TCP (the only opcode the Rust driver uses) and answers as the
//! primary of a one-member replica set of MongoDB 7.0 (`maxWireVersion` 21, sessions with
//! `logicalSessionTimeoutMinutes`). Every command after the handshake gets a plausible
//! default reply in MongoDB 7.0's documented format (`insert` → `{n, ok}`, `find`/`aggregate`
//! → an exhausted cursor, `commitTransaction`/`abortTransaction` → `{ok: 1}`, ...) unless the
//! test scripted another reply for it with [`WireServer::script`]. Every command is recorded,
//! with its document sequences (`documents`, `updates`, `deletes`) merged into the body, for
//! [`WireServer::commands`].

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use bson::{doc, Bson, Document};

/// `OP_MSG`'s opcode.
const OP_MSG: i32 = 2013;
/// `OP_MSG` flag: a CRC-32C checksum follows the sections.
const CHECKSUM_PRESENT: u32 = 1;
/// Commands of the handshake and of server monitoring (not recorded by default).
const MONITORING: &[&str] = &[
    "hello",
    "isMaster",
    "ismaster",
    "buildInfo",
    "buildinfo",
    "ping",
];

#[derive(Default)]
struct State {
    /// Every command received, in order.
    log: Vec<Document>,
    /// Replies to send instead of the default, per command name, in order.
    script: Vec<(String, Document)>,
}

/// A running scripted server on a loopback port; stops accepting when dropped.
pub struct WireServer {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl WireServer {
    /// Starts the server on a free loopback port.
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_state, accept_stop) = (state.clone(), stop.clone());
        thread::Builder::new()
            .name("wire-accept".into())
            .spawn(move || accept(listener, port, accept_state, accept_stop))?;
        Ok(Self { port, state, stop })
    }

    /// The connection string (a direct connection to this one member).
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Answers the next `command` (by name, e.g. `"insert"` or `"commitTransaction"`) with
    /// `reply` instead of the default. Several scripts for one command are used in order.
    pub fn script(&self, command: &str, reply: Document) {
        self.lock().script.push((command.to_string(), reply));
    }

    /// Every command received so far except the handshake and monitoring ones, in order.
    pub fn commands(&self) -> Vec<Document> {
        self.lock()
            .log
            .iter()
            .filter(|c| {
                !c.keys()
                    .next()
                    .is_some_and(|k| MONITORING.contains(&k.as_str()))
            })
            .cloned()
            .collect()
    }

    /// The commands received so far that belong to a transaction (they carry `txnNumber`).
    pub fn transaction_commands(&self) -> Vec<Document> {
        self.commands()
            .into_iter()
            .filter(|c| c.contains_key("txnNumber"))
            .collect()
    }

    /// Forgets the commands received so far.
    pub fn clear(&self) {
        self.lock().log.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The name of a command (its first key).
pub fn command_name(command: &Document) -> &str {
    command.keys().next().map_or("", String::as_str)
}

fn accept(listener: TcpListener, port: u16, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let connection_ids = Arc::new(AtomicI32::new(1));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (state, stop, ids) = (state.clone(), stop.clone(), connection_ids.clone());
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let _ = thread::Builder::new()
                    .name("wire-conn".into())
                    .spawn(move || serve(stream, port, id, state, stop));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
}

fn serve(
    mut stream: TcpStream,
    port: u16,
    connection_id: i32,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = stream.set_nodelay(true);
    let mut next_id = 1;
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let message = match read_message(&mut stream) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(_) => return,
        };
        let (request_id, command) = message;
        let reply = {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            state.log.push(command.clone());
            let name = command_name(&command).to_string();
            match state.script.iter().position(|(n, _)| *n == name) {
                Some(i) => state.script.remove(i).1,
                None => default_reply(&command, port, connection_id),
            }
        };
        next_id += 1;
        if write_reply(&mut stream, next_id, request_id, &reply).is_err() {
            return;
        }
    }
}

/// Reads one `OP_MSG`: its request id and the command (body plus document sequences).
/// `Ok(None)` when no message started within the read timeout.
fn read_message(stream: &mut TcpStream) -> io::Result<Option<(i32, Document)>> {
    let mut header = [0u8; 16];
    match stream.read(&mut header[..1]) {
        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    }
    let _ = stream.set_read_timeout(None);
    stream.read_exact(&mut header[1..])?;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let int = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (length, request_id, op_code) =
        (int(&header[0..4]), int(&header[4..8]), int(&header[12..16]));
    let body_len = usize::try_from(length - 16).map_err(|_| invalid("bad message length"))?;
    let mut body = vec![0u8; body_len];
    stream.read_exact(&mut body)?;
    if op_code != OP_MSG {
        return Err(invalid("only OP_MSG is spoken here"));
    }
    let flags = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let end = if flags & CHECKSUM_PRESENT != 0 {
        body.len() - 4
    } else {
        body.len()
    };
    let mut at = 4;
    let mut command = Document::new();
    let mut sequences = Vec::new();
    while at < end {
        let kind = body[at];
        at += 1;
        let size = usize::try_from(int(&body[at..])).map_err(|_| invalid("bad section size"))?;
        if kind == 0 {
            command =
                Document::from_reader(&body[at..at + size]).map_err(|e| invalid(&e.to_string()))?;
            at += size;
        } else {
            let section_end = at + size;
            let mut p = at + 4;
            let name_end = p + body[p..]
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| invalid("bad identifier"))?;
            let name = String::from_utf8_lossy(&body[p..name_end]).into_owned();
            p = name_end + 1;
            let mut docs = Vec::new();
            while p < section_end {
                let len = usize::try_from(int(&body[p..])).map_err(|_| invalid("bad document"))?;
                docs.push(Bson::Document(
                    Document::from_reader(&body[p..p + len])
                        .map_err(|e| invalid(&e.to_string()))?,
                ));
                p += len;
            }
            sequences.push((name, docs));
            at = section_end;
        }
    }
    for (name, docs) in sequences {
        command.insert(name, docs);
    }
    Ok(Some((request_id, command)))
}

fn write_reply(
    stream: &mut TcpStream,
    id: i32,
    response_to: i32,
    reply: &Document,
) -> io::Result<()> {
    let mut doc = Vec::new();
    reply
        .to_writer(&mut doc)
        .map_err(|e| invalid(&e.to_string()))?;
    let length = i32::try_from(16 + 4 + 1 + doc.len()).map_err(|_| invalid("reply too large"))?;
    let mut out = Vec::with_capacity(length as usize);
    for v in [length, id, response_to, OP_MSG] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&doc);
    stream.write_all(&out)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// MongoDB 7.0's reply to `command` when the test scripted none.
fn default_reply(command: &Document, port: u16, connection_id: i32) -> Document {
    let name = command_name(command);
    let db = command.get_str("$db").unwrap_or("test");
    let ns = match command.get(name) {
        Some(Bson::String(coll)) => format!("{db}.{coll}"),
        _ => format!("{db}.$cmd.aggregate"),
    };
    let count = |key: &str| command.get_array(key).map_or(0, |a| a.len() as i32);
    match name {
        "hello" | "isMaster" | "ismaster" => {
            let me = format!("127.0.0.1:{port}");
            doc! {
                "helloOk": true,
                "isWritablePrimary": true,
                "ismaster": true,
                "setName": "rs0",
                "setVersion": 1,
                "hosts": [me.clone()],
                "primary": me.clone(),
                "me": me,
                "maxBsonObjectSize": 16_777_216,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
                "localTime": bson::DateTime::now(),
                "logicalSessionTimeoutMinutes": 30,
                "connectionId": connection_id,
                "minWireVersion": 0,
                "maxWireVersion": 21,
                "readOnly": false,
                "ok": 1.0,
            }
        }
        "buildInfo" | "buildinfo" => doc! {
            "version": "7.0.0",
            "versionArray": [7, 0, 0, 0],
            "maxBsonObjectSize": 16_777_216,
            "ok": 1.0,
        },
        "insert" => doc! { "n": count("documents"), "ok": 1.0 },
        "update" => doc! { "n": count("updates"), "nModified": count("updates"), "ok": 1.0 },
        "delete" => doc! { "n": count("deletes"), "ok": 1.0 },
        "find" | "aggregate" => doc! {
            "cursor": { "id": 0_i64, "ns": ns, "firstBatch": [] },
            "ok": 1.0,
        },
        "listCollections" => doc! {
            "cursor": { "id": 0_i64, "ns": format!("{db}.$cmd.listCollections"), "firstBatch": [] },
            "ok": 1.0,
        },
        _ => doc! { "ok": 1.0 },
    }
}
