// An independent OCPP 2.1 CSMS for the secc OCPP client tests, on the npm package ocpp-rpc 2.2.1 (MIT).
//
// Strict mode: every frame both ways is validated by ajv against ocpp-rpc's own bundled OCPP 2.1 schemas
// (lib/schemas/ocpp2_1.json). Its built-in 'ocpp2.1' validator looks schemas up as `urn:<Action>.req/.conf`
// while the bundled file names them `urn:<Action>Request/Response`, so the ids are renamed here and passed as
// `strictModeValidators` (measured: without it the first call fails "Schema 'urn:...req' is missing").
//
//   node server.js [--port N] [--password P] [--cert PEM --key PEM]
//
// stdout: one JSON object per line: {"event":"listening","port"}, {"event":"connected","identity","protocol"},
// {"event":"call","method","params"} for every station CALL, {"event":"invalid",...} for every frame strict mode
// refused, {"event":"reply","id","result"|"error"} for the test's calls, {"event":"disconnected"}.
// stdin: {"cmd":"call","id","method","params"} sends a CALL to the connected station; {"cmd":"exit"}.
'use strict';
const fs = require('fs');
const https = require('https');
const readline = require('readline');
const { RPCServer, createValidator } = require('ocpp-rpc');

const args = process.argv.slice(2);
const opt = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : fallback;
};
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n');

const bundled = require('ocpp-rpc/lib/schemas/ocpp2_1.json');
const renamed = bundled.map(schema => ({
    ...schema,
    $id: schema.$id.replace(/^urn:(.*)Request$/, 'urn:$1.req').replace(/^urn:(.*)Response$/, 'urn:$1.conf'),
}));

const server = new RPCServer({
    protocols: ['ocpp2.1'],
    strictMode: true,
    strictModeValidators: [createValidator('ocpp2.1', renamed)],
    respondWithDetailedErrors: true,
});

const password = opt('password');
server.auth((accept, reject, handshake) => {
    if (password !== undefined && (!handshake.password || handshake.password.toString('utf8') !== password)) {
        out({ event: 'auth-rejected', identity: handshake.identity });
        reject(401);
        return;
    }
    accept({});
});

const now = () => new Date().toISOString();
const replies = {
    BootNotification: () => ({ status: 'Accepted', currentTime: now(), interval: 300 }),
    Heartbeat: () => ({ currentTime: now() }),
    Authorize: () => ({ idTokenInfo: { status: 'Accepted' } }),
    NotifyEVChargingNeeds: () => ({ status: 'Accepted' }),
};

let station = null;
server.on('client', client => {
    station = client;
    out({ event: 'connected', identity: client.identity, protocol: client.protocol });
    client.on('strictValidationFailure', e => out({ event: 'invalid', outbound: e.outbound, isCall: e.isCall,
                                                   error: String(e.error && e.error.message || e.error) }));
    client.on('badMessage', e => out({ event: 'invalid', bad: String(e.error && e.error.message || e.error) }));
    client.on('close', () => { out({ event: 'disconnected' }); if (station === client) station = null; });
    client.handle(({ method, params }) => {
        out({ event: 'call', method, params });
        const reply = replies[method];
        return reply ? reply() : {};
    });
});

readline.createInterface({ input: process.stdin }).on('line', async line => {
    let cmd;
    try { cmd = JSON.parse(line); } catch (e) { return; }
    if (cmd.cmd === 'exit') {
        await server.close({ awaitPending: false });
        process.exit(0);
    }
    if (cmd.cmd === 'call') {
        if (!station) { out({ event: 'reply', id: cmd.id, error: { code: 'NoStation', message: 'not connected' } }); return; }
        try {
            const result = await station.call(cmd.method, cmd.params);
            out({ event: 'reply', id: cmd.id, result });
        } catch (e) {
            out({ event: 'reply', id: cmd.id, error: { code: e.rpcErrorCode || e.name, message: e.message } });
        }
    }
});

(async () => {
    const port = Number(opt('port', '0'));
    if (opt('cert')) {
        const tls = https.createServer({ cert: fs.readFileSync(opt('cert')), key: fs.readFileSync(opt('key')),
                                         minVersion: 'TLSv1.2' });
        tls.on('upgrade', server.handleUpgrade);
        await new Promise(resolve => tls.listen(port, '127.0.0.1', resolve));
        out({ event: 'listening', port: tls.address().port, tls: true });
    } else {
        const http = await server.listen(port, '127.0.0.1');
        out({ event: 'listening', port: http.address().port, tls: false });
    }
})();
