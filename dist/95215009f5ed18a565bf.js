module.exports = eval("require")("./convert.sh");
