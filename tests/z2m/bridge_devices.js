// Prints a Zigbee2MQTT `bridge/devices` payload for real device definitions
// from the npm package zigbee-herdsman-converters (the definitions
// Zigbee2MQTT itself runs on): for each "MODEL=friendly name" argument, the
// device entry Zigbee2MQTT would publish, exposes computed by the package.
// Usage: NODE_PATH=<dir>/node_modules node bridge_devices.js MODEL=NAME ...
'use strict';
const fs = require('fs');
const path = require('path');
const zhc = require('zigbee-herdsman-converters');

async function main() {
    const wanted = process.argv.slice(2).map((arg) => {
        const at = arg.indexOf('=');
        return { model: arg.slice(0, at), name: arg.slice(at + 1) };
    });
    const dir = path.join(path.dirname(require.resolve('zigbee-herdsman-converters')), 'devices');
    const found = new Map();
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.js'))) {
        const module = require(path.join(dir, file));
        for (const definition of module.definitions || []) {
            if (wanted.some((w) => w.model === definition.model) && !found.has(definition.model)) {
                found.set(definition.model, definition);
            }
        }
    }
    const devices = [{ ieee_address: '0x0000000000000000', type: 'Coordinator', friendly_name: 'Coordinator', supported: true }];
    let n = 1;
    for (const { model, name } of wanted) {
        const raw = found.get(model);
        if (!raw) throw new Error(`no definition for model ${model}`);
        const definition = await zhc.prepareDefinition(raw);
        const exposes = typeof definition.exposes === 'function' ? definition.exposes(undefined, {}) : definition.exposes;
        devices.push({
            ieee_address: '0x' + (0x00158d0000000000n + BigInt(n++)).toString(16).padStart(16, '0'),
            type: 'Router',
            friendly_name: name,
            supported: true,
            disabled: false,
            definition: {
                model: definition.model,
                vendor: definition.vendor,
                description: definition.description,
                exposes: JSON.parse(JSON.stringify(exposes)),
            },
        });
    }
    process.stdout.write(JSON.stringify(devices));
}

main().catch((e) => {
    process.stderr.write(`${e.stack || e}\n`);
    process.exit(1);
});
