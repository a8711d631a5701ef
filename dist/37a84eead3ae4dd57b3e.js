module.exports = eval("require")("./bundle.sh");
