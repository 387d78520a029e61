//! The test servers start, answer, restart and stop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use quotestream_testkit::{PostgresServer, RedisServer};

#[test]
fn redis_starts_answers_and_restarts_on_the_same_port() {
    let mut redis = RedisServer::start().expect("redis starts");
    assert!(redis.command(&["PING"]).unwrap().starts_with("+PONG"));
    assert_eq!(redis.command(&["SET", "k", "v"]).unwrap(), "+OK\r\n");
    let port = redis.port();
    redis.stop();
    assert!(
        redis.command(&["PING"]).is_err(),
        "a stopped server refuses connections"
    );
    redis.restart().expect("redis restarts");
    assert_eq!(redis.port(), port);
    assert!(redis.command(&["PING"]).unwrap().starts_with("+PONG"));
}

#[test]
fn redis_with_a_password_requires_auth() {
    let redis = RedisServer::start_with_password("s3cret").expect("redis starts");
    assert!(redis.url().contains(":s3cret@"));
    assert!(redis.command(&["PING"]).unwrap().starts_with("+PONG"));
}

#[test]
fn postgres_starts_and_runs_sql_in_its_own_database() {
    let pg = PostgresServer::start().expect("postgres starts");
    let dsn = pg.create_database("testkit").unwrap();
    assert!(dsn.ends_with("/testkit"));
    pg.psql("testkit", "CREATE TABLE t (x int)").unwrap();
    pg.psql("testkit", "INSERT INTO t VALUES (1), (2)").unwrap();
    assert_eq!(pg.psql("testkit", "SELECT sum(x) FROM t").unwrap(), "3");
}
