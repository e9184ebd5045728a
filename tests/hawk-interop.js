// Hawk interoperability between tsgraphd's C implementation and the node hawk package
// (an independent implementation, from the Debian node-hawk package).
//
//   node tests/hawk-interop.js vectors HAWK_TOOL
//       Cross-checks, both ways: our request headers verified by Hawk.server.authenticate,
//       node's request headers verified by our MAC code, node's Server-Authorization
//       verified by hawk_verify_response, node's stale-timestamp tsm by hawk_verify_tsm.
//       Prints one line per check; exits non-zero on the first failure.
//   node tests/hawk-interop.js serve PORTFILE [KEY_FILE] [SKEW_SEC]
//       A loopback HTTP server answering GET /help/hawk/self-test like the real service:
//       Hawk.server.authenticate on the request (nonces remembered), Hawk.server.header on
//       the answer. Writes its port to PORTFILE; runs until killed.
'use strict';

// Debian's node-hawk lives in /usr/share/nodejs with its @hapi dependencies; a node that is
// not Debian's own does not search there, so add it before loading.
if (!(process.env.NODE_PATH || '').split(':').includes('/usr/share/nodejs')) {
    process.env.NODE_PATH = ['/usr/share/nodejs', process.env.NODE_PATH].filter(Boolean).join(':');
    require('module').Module._initPaths();
}

const Hawk = require('/usr/share/nodejs/hawk');
const ChildProcess = require('child_process');
const Fs = require('fs');
const Http = require('http');

const ID = '5537c4284e9684df7e000014';
const ORG = '545d0293b620cd090d000023';
const KEY = 'werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn';
const credentials = { id: ID, key: KEY, algorithm: 'sha256' };

let failures = 0;
const check = (name, ok) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
    if (!ok) {
        failures++;
    }
};

const tool = (bin, args) => {
    const r = ChildProcess.spawnSync(bin, args, {
        env: Object.assign({}, process.env, { HAWK_ID: ID, HAWK_KEY: KEY, HAWK_EXT: ORG }),
        encoding: 'utf8'
    });
    return { status: r.status, out: (r.stdout || '').trim(), err: (r.stderr || '').trim() };
};

// A node request object as Hawk.server.authenticate reads it.
const fakeReq = (method, url, host, port, authorization, contentType) => ({
    method, url,
    headers: Object.assign({ host: `${host}:${port}`, authorization },
        contentType ? { 'content-type': contentType } : {})
});

const authenticates = async (req, options) => {
    try {
        return await Hawk.server.authenticate(req, () => credentials, options || {});
    }
    catch (err) {
        return null;
    }
};

const vectors = async (bin) => {
    const now = Math.floor(Date.now() / 1000);
    const cases = [
        ['GET', '/v2/agents?status=online', 'api.threatstack.com', 443],
        ['GET', '/v2/agents?status=online&token=%2B%2Babc%2F%3D', '127.0.0.1', 8080],
        ['GET', '/v2/alerts?status=active&from=2020-05-18T15%3A02%3A09.000Z&until=2020-05-19T00%3A00%3A00.000Z', 'API.ThreatStack.com', 443],
        ['GET', '/help/hawk/self-test', '[::1]', 8443],
        ['POST', '/v2/alerts/5ec2a7e1c9f3b200015a1b2c/dismiss', 'api.threatstack.com', 443,
            'application/json; charset=utf-8', '{"reason":"OTHER"}']
    ];

    for (const [method, uri, host, port, ctype, payload] of cases) {
        const label = `${method} ${uri.slice(0, 40)} @${host}:${port}${payload ? ' +payload' : ''}`;
        const nonce = 'n' + Math.random().toString(36).slice(2, 10);

        // 1. C signs, node verifies (MAC, payload hash, ts window).
        const args = ['sign', method, uri, host, String(port), String(now), nonce];
        if (payload) {
            args.push(ctype, payload);
        }
        const signed = tool(bin, args);
        check(`C header signs (${label})`, signed.status === 0);
        const req = fakeReq(method, uri, host, port, signed.out, ctype);
        const res = await authenticates(req, payload ? { payload } : {});
        check(`node verifies C header (${label})`, res !== null && res.artifacts.ext === ORG);
        const tampered = fakeReq(method, uri + 'x', host, port, signed.out, ctype);
        check(`node rejects C header for another URI (${label})`, (await authenticates(tampered)) === null);

        // 2. node signs, C verifies.
        const scheme = port === 443 ? 'https' : 'http';
        const { header, artifacts } = Hawk.client.header(`${scheme}://${host}:${port}${uri}`, method, {
            credentials, ext: ORG, timestamp: now, nonce,
            ...(payload ? { payload, contentType: ctype } : {})
        });
        // node's client signs an IPv6 host without brackets (its server, like ours, keeps
        // them, as the Host header has them): verify over the host node actually signed.
        const vargs = ['verify-request', method, uri, artifacts.host, String(port), header];
        if (payload) {
            vargs.push(ctype, payload);
        }
        let v = tool(bin, vargs);
        check(`C verifies node header (${label}) ${v.err}`, v.status === 0);
        v = tool(bin, ['verify-request', method, uri, artifacts.host, String(port + 1), header]);
        check(`C rejects node header for another port (${label})`, v.status === 1);

        // 3. node answers with Server-Authorization, C verifies it against its own request.
        if (res) {
            const body = '{"status":"ok","n":1}';
            const serverAuth = Hawk.server.header(credentials, res.artifacts,
                { payload: body, contentType: 'application/json' });
            v = tool(bin, ['verify-response', method, uri, host, String(port), String(now), nonce,
                serverAuth, 'application/json', body]);
            check(`C verifies node Server-Authorization (${label}) ${v.err}`, v.status === 0);
            v = tool(bin, ['verify-response', method, uri, host, String(port), String(now), nonce,
                serverAuth, 'application/json', body + ' ']);
            check(`C rejects node Server-Authorization over another body (${label})`, v.status === 1);
        }
    }

    // 4. Stale timestamp: node's WWW-Authenticate tsm verifies with C and gives the offset.
    const stale = fakeReq('GET', '/help/hawk/self-test', '127.0.0.1', 8080,
        tool(bin, ['sign', 'GET', '/help/hawk/self-test', '127.0.0.1', '8080', String(now - 3600), 'stale1']).out);
    let www = null;
    try {
        await Hawk.server.authenticate(stale, () => credentials, {});
    }
    catch (err) {
        www = err.output && err.output.headers['WWW-Authenticate'];
    }
    check(`node answers a stale ts with a tsm: ${www}`, typeof www === 'string' && www.includes('tsm='));
    if (www) {
        // Our clock put 300 s behind node's: node's ts was taken just before t0, so the
        // offset is 300 s less the moments between (not the whole run's time, on a slow box).
        const t0 = Math.floor(Date.now() / 1000);
        const v = tool(bin, ['verify-tsm', www, String(t0 - 300)]);
        const off = parseInt(v.out, 10);
        check(`C verifies node tsm, offset ${v.out}`, v.status === 0 && off >= 295 && off <= 301);
        const forged = www.replace(/tsm="([^"]*)"/, 'tsm="AAAA$1"');
        check('C rejects a forged tsm', tool(bin, ['verify-tsm', forged, String(now)]).status === 1);
    }
    const t = tool(bin, ['tsm', String(now)]);
    check('C tsm equals node calculateTsMac', t.out === Hawk.crypto.calculateTsMac(now, credentials));

    // 5. The published vector, through node.
    const spec = { id: 'dh37fgj492je', key: 'werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn', algorithm: 'sha256' };
    const mac = Hawk.crypto.calculateMac('header', spec, {
        ts: 1353832234, nonce: 'j4h3g2', method: 'GET', resource: '/resource/1?b=1&a=2',
        host: 'example.com', port: 8000, ext: 'some-app-ext-data'
    });
    check('node agrees with the published vector', mac === '6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE=');

    console.log(`${failures === 0 ? 'all checks passed' : failures + ' check(s) failed'}`);
    process.exit(failures === 0 ? 0 : 1);
};

const serve = (portFile, keyFile, skewSec) => {
    const key = keyFile ? Fs.readFileSync(keyFile, 'utf8').replace(/\n$/, '') : KEY;
    const creds = { id: ID, key, algorithm: 'sha256' };
    const offset = (parseInt(skewSec || '0', 10) || 0) * 1000;
    const seen = new Set();
    const options = {
        localtimeOffsetMsec: offset,
        nonceFunc: (k, nonce, ts) => {
            if (seen.has(nonce)) {
                throw new Error('replay');
            }
            seen.add(nonce);
        }
    };

    const server = Http.createServer(async (req, res) => {
        let result;
        try {
            result = await Hawk.server.authenticate(req, (id) => (id === ID ? creds : null), options);
        }
        catch (err) {
            const headers = { 'Content-Type': 'application/json' };
            if (err.output && err.output.headers['WWW-Authenticate']) {
                headers['WWW-Authenticate'] = err.output.headers['WWW-Authenticate'];
            }
            res.writeHead(401, headers);
            res.end(JSON.stringify({ errors: [err.message] }));
            return;
        }
        const ok = req.url === '/help/hawk/self-test' && result.artifacts.ext === ORG;
        const body = JSON.stringify(ok ? { status: 'ok' } : { errors: ['not found'] });
        const auth = Hawk.server.header(creds, result.artifacts, { payload: body, contentType: 'application/json' });
        res.writeHead(ok ? 200 : 404, { 'Content-Type': 'application/json', 'Server-Authorization': auth });
        res.end(body);
    });
    server.listen(0, '127.0.0.1', () => {
        Fs.writeFileSync(portFile + '.tmp', `${server.address().port}\n`);
        Fs.renameSync(portFile + '.tmp', portFile);
    });
    process.on('SIGTERM', () => server.close(() => process.exit(0)));
};

const [mode, a, b, c] = process.argv.slice(2);
if (mode === 'vectors' && a) {
    vectors(a);
}
else if (mode === 'serve' && a) {
    serve(a, b, c);
}
else {
    console.error('usage: hawk-interop.js vectors HAWK_TOOL | serve PORTFILE [KEY_FILE] [SKEW_SEC]');
    process.exit(2);
}
