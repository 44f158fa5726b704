# frozen_string_literal: true

# The shop's inventory API: Ruby, WEBrick, PostgreSQL (ruby-pg), Redis (ruby-redis).
#
#   GET  /healthz        200 "OK" when the database answers, 503 "UNAVAILABLE ..." otherwise
#   GET  /items          {"items": [...], "count": n}: the 50 newest items
#   POST /items          {"sku": s, "name": n, "qty": q} -> 201 {"item": {...}};
#                        the same body again -> 200 (a replay), another body for that sku -> 409
#   GET  /items/<sku>    {"item": {...}, "source": "cache"|"db"}; 404 when unknown
#
# Configuration by environment: PORT, DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, REDIS_URL.
# The cache is optional: when Redis does not answer, reads go to the database and a warning is
# logged (at most once per 5 s). Logs are logfmt lines on stdout: ts=... level=... msg=... k=v (a request's ts is when it was received).

require "json"
require "pg"
require "redis"
require "time"
require "timeout"
require "webrick"

$stdout.sync = true

# logfmt lines on stdout.
module Log
  module_function

  def fmt(value)
    s = value.to_s
    s.empty? || s.match?(/[\s"=\\]/) ? s.inspect : s
  end

  # `at`: the time the line is about; a request's lines carry the time it was received (like
  # Apache's %t), so a request that began during an outage and failed after it is dated in it.
  def emit(level, msg, at: nil, **fields)
    parts = ["ts=#{(at || Time.now).utc.iso8601(3)}", "level=#{level}", "msg=#{fmt(msg)}"]
    fields.each { |k, v| parts << "#{k}=#{fmt(v)}" }
    $stdout.puts(parts.join(" "))
  end
end

# WEBrick's own messages, in the same logfmt.
class WebrickLog < WEBrick::BasicLog
  LEVELS = { FATAL => "error", ERROR => "error", WARN => "warn", INFO => "info", DEBUG => "debug" }.freeze

  def initialize
    super(nil, WARN)
  end

  def log(level, data)
    Log.emit(LEVELS.fetch(level, "info"), data.to_s.strip, source: "webrick") if level <= @level
  end
end

# A small pool of PostgreSQL connections. A pooled connection found dead (the server restarted,
# or terminated it) is dropped. A statement that fails or hangs on a reused connection is retried
# once on a fresh one, and the other idle connections are dropped too: after a database restart
# they all point at a server that is gone (its container took the TCP state with it, so no reset
# ever arrives). Every call is bounded (reused 1.5 s, then connect 2 s + statement 3 s; 4.5 s in
# all): the API fails fast.
class Pool
  STALE = [PG::ConnectionBad, PG::UnableToSend, PG::AdminShutdown, PG::CrashShutdown,
           Timeout::Error].freeze

  def initialize(params, size)
    @params = params
    @size = size
    @idle = []
    @lock = Mutex.new
  end

  def run(&block)
    conn, reused = checkout
    begin
      result = Timeout.timeout(reused ? 1.5 : 3) { block.call(conn) }
    rescue *STALE
      close(conn)
      raise unless reused

      flush
      conn = Timeout.timeout(2.5) { connect }
      reused = false
      retry
    rescue StandardError
      close(conn)
      raise
    end
    checkin(conn)
    result
  end

  private

  def flush
    stale = @lock.synchronize { @idle.slice!(0..) }
    stale.each { |c| close(c) }
  end

  def checkout
    loop do
      conn = @lock.synchronize { @idle.pop }
      return [Timeout.timeout(2.5) { connect }, false] if conn.nil?
      return [conn, true] if alive?(conn)

      close(conn)
    end
  end

  def checkin(conn)
    keep = @lock.synchronize { @idle.size < @size && @idle.push(conn) }
    close(conn) unless keep
  end

  def alive?(conn)
    conn.consume_input
    conn.status == PG::CONNECTION_OK && conn.transaction_status == PG::PQTRANS_IDLE
  rescue PG::Error
    false
  end

  def connect
    PG.connect(@params)
  end

  def close(conn)
    conn&.close
  rescue PG::Error
    nil
  end
end

# The Redis cache, optional: errors open a 5 s window in which it is not asked.
class Cache
  def initialize(url)
    @redis = if url.to_s.empty?
               nil
             else
               Redis.new(url: url, connect_timeout: 0.3, read_timeout: 0.3, write_timeout: 0.3,
                         reconnect_attempts: 0)
             end
    @down_until = 0.0
  end

  def get(key)
    guard(:get) { @redis.get(key) }
  end

  def set(key, value)
    guard(:set) { @redis.set(key, value, ex: 60) }
  end

  private

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def guard(op)
    return nil if @redis.nil? || now < @down_until

    yield
  rescue Redis::BaseError, SystemCallError, IOError => e
    @down_until = now + 5
    Log.emit("warn", "cache unavailable, using the database", op: op, error: e.class.name)
    nil
  end
end

password = ENV.fetch("DB_PASSWORD", "")
abort "level=error msg=\"DB_PASSWORD is not set\"" if password.empty?
POOL = Pool.new(
  {
    host: ENV.fetch("DB_HOST", "db"), port: Integer(ENV.fetch("DB_PORT", "5432")),
    dbname: ENV.fetch("DB_NAME", "shop"), user: ENV.fetch("DB_USER", "shop"), password: password,
    connect_timeout: 2, tcp_user_timeout: 3000, keepalives: 1, keepalives_idle: 5,
    keepalives_interval: 1, keepalives_count: 3, application_name: "shop-api",
    options: "-c statement_timeout=3000"
  },
  8
)
CACHE = Cache.new(ENV.fetch("REDIS_URL", ""))
PORT = Integer(ENV.fetch("PORT", "4567"))
SKU = /\A[A-Za-z0-9._:-]{1,64}\z/
COLUMNS = "sku, name, qty, created_at"

# A request the client got wrong: answered 4xx with its reason.
class BadRequest < StandardError
  attr_reader :status

  def initialize(msg, status = 400)
    super(msg)
    @status = status
  end
end

def item_json(row)
  { "sku" => row["sku"], "name" => row["name"], "qty" => Integer(row["qty"]),
    "created_at" => row["created_at"] }
end

def reply(res, status, body)
  res.status = status
  if body.is_a?(String)
    res["Content-Type"] = "text/plain; charset=utf-8"
    res.body = "#{body}\n"
  else
    res["Content-Type"] = "application/json"
    res.body = JSON.generate(body)
  end
end

def find_item(sku)
  POOL.run { |c| c.exec_params("SELECT #{COLUMNS} FROM items WHERE sku = $1", [sku]).first }
end

def parse_item(req)
  body = JSON.parse(req.body.to_s)
  raise BadRequest, "expected a JSON object" unless body.is_a?(Hash)

  sku, name, qty = body.values_at("sku", "name", "qty")
  raise BadRequest, "sku: 1 to 64 of A-Z a-z 0-9 . _ : -" unless sku.is_a?(String) && SKU.match?(sku)
  raise BadRequest, "name: a string of at most 200 characters" unless name.is_a?(String) && name.size <= 200
  raise BadRequest, "qty: an integer >= 0" unless qty.is_a?(Integer) && qty >= 0

  [sku, name, qty]
rescue JSON::ParserError
  raise BadRequest, "expected a JSON body"
end

def create_item(req, res)
  sku, name, qty = parse_item(req)
  row = POOL.run do |c|
    c.exec_params(
      "INSERT INTO items (sku, name, qty) VALUES ($1, $2, $3) ON CONFLICT (sku) DO NOTHING " \
      "RETURNING #{COLUMNS}", [sku, name, qty]
    ).first
  end
  if row
    item = item_json(row)
    CACHE.set("item:#{sku}", JSON.generate(item))
    return reply(res, 201, { "item" => item })
  end
  existing = find_item(sku)
  if existing && existing["name"] == name && Integer(existing["qty"]) == qty
    return reply(res, 200, { "item" => item_json(existing), "replayed" => true })
  end

  raise BadRequest.new("sku #{sku} exists with other contents", 409)
end

def show_item(sku, res)
  raise BadRequest, "bad sku" unless SKU.match?(sku)

  cached = CACHE.get("item:#{sku}")
  return reply(res, 200, { "item" => JSON.parse(cached), "source" => "cache" }) if cached

  row = find_item(sku)
  raise BadRequest.new("no item #{sku}", 404) if row.nil?

  item = item_json(row)
  CACHE.set("item:#{sku}", JSON.generate(item))
  reply(res, 200, { "item" => item, "source" => "db" })
end

def list_items(res)
  rows = POOL.run { |c| c.exec("SELECT #{COLUMNS} FROM items ORDER BY created_at DESC LIMIT 50").to_a }
  reply(res, 200, { "items" => rows.map { |r| item_json(r) }, "count" => rows.size })
end

def health(res)
  POOL.run { |c| c.exec("SELECT 1") }
  reply(res, 200, "OK")
end

def route(req, res)
  case [req.request_method, req.path]
  in ["GET", "/healthz"] then health(res)
  in ["GET", "/items"] then list_items(res)
  in ["POST", "/items"] then create_item(req, res)
  in ["GET", %r{\A/items/[^/]+\z}] then show_item(req.path.delete_prefix("/items/"), res)
  else raise BadRequest.new("no route #{req.request_method} #{req.path}", 404)
  end
end

def handle(req, res)
  received = Time.now
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  begin
    route(req, res)
  rescue BadRequest => e
    reply(res, e.status, { "error" => e.message })
  rescue PG::Error, Timeout::Error => e
    Log.emit("error", "database unavailable", at: received, path: req.path, error: e.class.name)
    req.path == "/healthz" ? reply(res, 503, "UNAVAILABLE database") : reply(res, 503, { "error" => "database unavailable" })
  rescue StandardError => e
    Log.emit("error", "internal error", at: received, path: req.path, error: e.class.name)
    reply(res, 500, { "error" => "internal error" })
  end
  ms = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000).round
  return if req.path == "/healthz" && res.status == 200

  Log.emit(res.status >= 500 ? "error" : "info", "request", at: received, method: req.request_method,
                                                          path: req.path, status: res.status, ms: ms)
end

server = WEBrick::HTTPServer.new(
  BindAddress: "0.0.0.0", Port: PORT, Logger: WebrickLog.new, AccessLog: [], DoNotReverseLookup: true
)
server.mount_proc("/") { |req, res| handle(req, res) }
%w[TERM INT].each { |sig| trap(sig) { server.shutdown } }
Log.emit("info", "shop api listening", port: PORT, db_host: ENV.fetch("DB_HOST", "db"))
server.start
