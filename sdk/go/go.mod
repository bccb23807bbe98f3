module tenkisandbox

go 1.19
