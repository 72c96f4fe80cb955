// Validates speedscope files against the JSON schema published in the
// speedscope npm package: node validate.js FILE...
// Prints one line per file; exits 1 if any file is invalid.
"use strict";
const fs = require("fs");
const path = require("path");
const Ajv = require("ajv");

const schemaPath = require.resolve("speedscope/dist/release/file-format-schema.json");
const schema = JSON.parse(fs.readFileSync(schemaPath, "utf8"));
const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(schema);

let bad = 0;
for (const file of process.argv.slice(2)) {
	const data = JSON.parse(fs.readFileSync(file, "utf8"));
	if (validate(data)) {
		console.log(`valid ${path.basename(file)}`);
	} else {
		bad++;
		console.log(`INVALID ${path.basename(file)}: ${ajv.errorsText(validate.errors)}`);
	}
}
console.log(`schema ${path.relative(__dirname, schemaPath)} (speedscope ${require("speedscope/package.json").version})`);
process.exit(bad ? 1 : 0);
